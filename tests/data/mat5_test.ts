import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  matField,
  MatFileError,
  matNumbers,
  matStrings,
  type MatValue,
  readMat,
} from "../../lib/data/mat5.ts";
import { fixturePath } from "../_assert.ts";

const read = (name: string) => readMat(readFileSync(fixturePath(`mat/${name}`)!), name);
const expected = JSON.parse(readFileSync(fixturePath("mat/expected.json")!, "utf8"));

function numeric(value: MatValue | undefined) {
  assert.ok(value?.type === "numeric", `expected a numeric array, got ${value?.type}`);
  return {
    class: value.class,
    dims: value.dims,
    data: Array.from(value.data),
    imag: value.imag && Array.from(value.imag),
  };
}

for (const file of ["types.mat", "types_compressed.mat"]) {
  Deno.test(`readMat() returns SciPy's values from ${file}`, () => {
    const vars = read(file);
    for (const name of ["matrix", "int16s", "uint8s", "singles", "flags", "complex"]) {
      const got = numeric(vars.get(name));
      assert.deepEqual(got.dims, expected[name].dims, name);
      assert.deepEqual(got.data, expected[name].data, name);
      if (expected[name].imag) assert.deepEqual(got.imag, expected[name].imag);
    }
    assert.equal(numeric(vars.get("int16s")).class, "int16");
    assert.equal(numeric(vars.get("flags")).class, "logical");
    assert.deepEqual(matStrings(vars.get("rows")!, "rows"), expected.rows);
    assert.deepEqual(matStrings(vars.get("text")!, "text"), [expected.text]);
    assert.deepEqual(numeric(vars.get("empty")).dims, [0, 0]);
    const record = vars.get("record")!;
    assert.deepEqual(matStrings(matField(record, "name", "record")[0], "name"), [expected.record.name]);
    assert.deepEqual(
      Array.from(matNumbers(matField(record, "values", "record")[0], "values")),
      expected.record.values,
    );
    const sub = matField(record, "sub", "record")[0];
    assert.ok(sub.type === "cell");
    assert.deepEqual(Array.from(matNumbers(sub.cells[0], "sub{1}")), expected.record.sub[0]);
    assert.deepEqual(matStrings(sub.cells[1], "sub{2}"), [expected.record.sub[1]]);
  });
}

for (const file of ["matlab_compact.mat", "matlab_compact_be.mat"]) {
  Deno.test(`readMat() reads MATLAB's compact storage and byte order in ${file}`, () => {
    const vars = read(file);
    const labels = numeric(vars.get("labels"));
    assert.equal(labels.class, "double"); // stored as miUINT8, returned by its class
    assert.deepEqual(labels.data, [1, 120, 7, 3]);
    const annotations = vars.get("annotations")!;
    assert.deepEqual(numeric(matField(annotations, "class", "a")[0]).data, [42]);
    assert.deepEqual(matStrings(matField(annotations, "fname", "a")[0], "fname"), ["a.jpg"]);
  });
}

Deno.test("readMat() reads the struct arrays of the Cars and Dogs fixtures", () => {
  const annotations = read("cars_annos.mat").get("annotations")!;
  assert.ok(annotations.type === "struct");
  assert.deepEqual(annotations.dims, [1, 7]);
  assert.deepEqual(annotations.fields, [
    "relative_im_path",
    "bbox_x1",
    "bbox_y1",
    "bbox_x2",
    "bbox_y2",
    "class",
    "test",
  ]);
  assert.deepEqual(matField(annotations, "class", "a").map((v) => matNumbers(v, "class")[0]), [
    1,
    2,
    3,
    1,
    3,
    2,
    1,
  ]);
  const files = matStrings(read("train_list.mat").get("file_list")!, "file_list");
  assert.equal(files.length, 5);
  assert.equal(files[2], "n02085782-Japanese_spaniel/n02085782_train2.jpg");
});

Deno.test("readMat() refuses v7.3, non-MAT and truncated files with the reason", () => {
  const header = (text: string) => {
    const bytes = new Uint8Array(136);
    bytes.set(new TextEncoder().encode(text));
    bytes.set([0x49, 0x4d], 126);
    return bytes;
  };
  assert.throws(
    () => readMat(header("MATLAB 7.3 MAT-file"), "x.mat"),
    /x\.mat: is a MAT-file v7\.3 \(HDF5\).*-v7/,
  );
  assert.throws(
    () => readMat(header("hello"), "y.mat"),
    (e) => e instanceof MatFileError && /not a MAT-file v5/.test(e.message),
  );
  assert.throws(() => readMat(new Uint8Array(10), "z.mat"), /z\.mat: only 10 bytes/);
  const good = readFileSync(fixturePath("mat/types.mat")!);
  assert.throws(() => readMat(good.subarray(0, 200), "cut.mat"), /cut\.mat: .*past the end/);
});

Deno.test("matField() and matStrings() name the variable and the fields when the shape is wrong", () => {
  const vars = read("types.mat");
  assert.throws(
    () => matField(vars.get("record")!, "nope", "types.mat: record"),
    /record: has no field "nope" \(fields: name, values, sub\)/,
  );
  assert.throws(
    () => matStrings(vars.get("matrix")!, "types.mat: matrix"),
    /matrix: is a numeric array, expected strings/,
  );
  assert.throws(
    () => matNumbers(vars.get("text")!, "types.mat: text"),
    /text: is a char array, expected numbers/,
  );
});
