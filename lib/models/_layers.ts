/**
 * Layers shared by ViT and Swin, written for the fast paths of tfjs measured in `../shared/STACK.md`: every linear
 * layer is a 2-D matMul `[B·T, in] × [in, out]` against a weight transposed once at load time (batched or
 * transpose-flag matMuls are 20–25× slower on WASM), and the patch embedding is a reshape + matMul rather than a
 * strided conv (WASM lacks Conv2DBackpropFilter, so this form also trains there).
 */
import * as tf from "@tensorflow/tfjs";

/** y = x Wᵀ + b with W stored as [in, out] (timm keeps [out, in]; `ParameterTable.linear` transposes). */
export interface Linear {
  weight: tf.Tensor2D;
  bias?: tf.Tensor1D;
}

/**
 * a b for a [N, in], b [in, out], differentiable with dA = dy bᵀ and dB = aᵀ dy formed by explicit transposes:
 * tfjs's own MatMul gradient uses the transpose flags, which run 10–25× slower on WASM (`../shared/STACK.md`;
 * measured 408 ms vs 52 ms for [4160, 512] × [128, 512]ᵀ, and a 64-px ViT training step 4.5× faster overall).
 */
export const matMul2d = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, b, save] = inputs as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a, b),
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => [
      tf.matMul(dy as tf.Tensor2D, tf.transpose(saved[1])),
      tf.matMul(tf.transpose(saved[0]), dy as tf.Tensor2D),
    ],
  };
}) as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/** x [N, in] → [N, out]. */
export function linear(x: tf.Tensor2D, p: Linear): tf.Tensor2D {
  const y = matMul2d(x, p.weight);
  return p.bias ? tf.add<tf.Tensor2D>(y, p.bias) : y;
}

/** LayerNorm over the last axis: γ ⊙ (x − μ) / √(σ² + ε) + β with the biased variance σ² (PyTorch's). */
export interface LayerNorm {
  weight: tf.Tensor1D;
  bias: tf.Tensor1D;
  eps: number;
}

/** x [N, D] → [N, D]. */
export function layerNorm(x: tf.Tensor2D, p: LayerNorm): tf.Tensor2D {
  const centered = tf.sub(x, tf.mean(x, 1, true));
  const variance = tf.mean(tf.square(centered), 1, true);
  return tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(variance, p.eps))), p.weight), p.bias);
}

/** The exact GELU, x · Φ(x) = ½ x (1 + erf(x / √2)) (timm's `nn.GELU()`; the tanh form is off by ~3e-4). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
}

/** fc2(GELU(fc1(x))). */
export interface Mlp {
  fc1: Linear;
  fc2: Linear;
}

/** x [N, D] → [N, D]. */
export function mlp(x: tf.Tensor2D, p: Mlp): tf.Tensor2D {
  return linear(gelu(linear(x, p.fc1)), p.fc2);
}

/** Multi-head self-attention with a fused qkv projection (rows q | k | v, head h = rows h·hd … (h+1)·hd). */
export interface Attention {
  qkv: Linear;
  proj: Linear;
  numHeads: number;
}

/**
 * Self-attention within `groups` independent sequences of `tokens` tokens each, laid out as x [groups·tokens, D]:
 * proj(softmax(q kᵀ / √hd + bias) v) per head. `bias` [G, H, T, T] is added to the scores of group g at
 * g mod G (Swin's relative-position bias plus shifted-window mask, G windows per image); omitted for ViT.
 */
export function attention(
  x: tf.Tensor2D,
  groups: number,
  tokens: number,
  p: Attention,
  bias?: tf.Tensor4D,
): tf.Tensor2D {
  const dim = x.shape[1], heads = p.numHeads, hd = dim / heads;
  const [q, k, v] = tf.split(linear(x, p.qkv), 3, 1);
  const byHead = (t: tf.Tensor, perm: number[], shape: number[]) =>
    tf.reshape(tf.transpose(tf.reshape(t, [groups, tokens, heads, hd]), perm), shape);
  const qh = byHead(tf.mul(q, hd ** -0.5), [0, 2, 1, 3], [groups * heads, tokens, hd]);
  const kt = byHead(k, [0, 2, 3, 1], [groups * heads, hd, tokens]); // kᵀ explicitly: transpose flags are slow on WASM
  const vh = byHead(v, [0, 2, 1, 3], [groups * heads, tokens, hd]);
  let scores: tf.Tensor = tf.matMul(qh, kt); // [G·H, T, T]
  if (bias) {
    const perImage = bias.shape[0];
    scores = tf.reshape(
      tf.add(tf.reshape(scores, [groups / perImage, perImage, heads, tokens, tokens]), bias),
      [groups * heads, tokens, tokens],
    );
  }
  const context = tf.matMul(tf.softmax(scores), vh); // [G·H, T, hd]
  const merged = tf.reshape(tf.transpose(tf.reshape(context, [groups, heads, tokens, hd]), [0, 2, 1, 3]), [
    groups * tokens,
    dim,
  ]);
  return linear(merged as tf.Tensor2D, p.proj);
}

/**
 * Applies `steps` in order, each inside its own `tf.tidy`, and frees every intermediate result as soon as the next
 * one exists, so that peak memory is one step's working set instead of the whole network's (a ViT-B forward at
 * batch 8 otherwise holds ~3 GB and aborts the WASM heap). `x` itself is left to the caller.
 */
export function sequential<T extends tf.Tensor>(x: T, steps: ((x: T) => T)[]): T {
  let current = x;
  for (const step of steps) {
    const next = tf.tidy(() => step(current));
    if (current !== x) current.dispose();
    current = next;
  }
  return current;
}

/**
 * Non-overlapping p×p patch embedding (the stride-p conv of timm's `PatchEmbed`) as one 2-D matMul: NHWC images
 * [B, H, W, C] → patches [B·(H/p)·(W/p), p·p·C] in row-major (y, x) patch order, each flattened (py, px, c), times
 * the conv weight rearranged to [p·p·C, D] by `ParameterTable.patchEmbed`.
 */
export function patchEmbed(images: tf.Tensor4D, p: Linear, patchSize: number): tf.Tensor2D {
  const [b, h, w, c] = images.shape;
  const rows = h / patchSize, cols = w / patchSize;
  const patches = tf.reshape(
    tf.transpose(tf.reshape(images, [b * rows, patchSize, cols, patchSize * c]), [0, 2, 1, 3]),
    [b * rows * cols, patchSize * patchSize * c],
  );
  return linear(patches as tf.Tensor2D, p);
}

/**
 * Model weights by timm key, in timm layout, turned into the layouts above. Two sources share the builders:
 * `ParameterTable` rearranges once at load time (inference), `LiveParameters` on every forward from tensors that
 * stay in timm layout (training: the rearrangements then run inside the gradient scope, so gradients reach the
 * timm-layout tensors).
 */
export abstract class ParameterSource {
  /** The tensor of `key` as stored. */
  abstract tensor<T extends tf.Tensor>(key: string): T;

  /** `f` applied to the stored tensor of `key`. */
  abstract derived(key: string, f: (t: tf.Tensor) => tf.Tensor): tf.Tensor;

  /** `<prefix>.weight` [out, in] → [in, out], and `<prefix>.bias` when `bias`. */
  linear(prefix: string, bias = true): Linear {
    return {
      weight: this.derived(`${prefix}.weight`, (w) => tf.transpose(w)) as tf.Tensor2D,
      bias: bias ? this.tensor(`${prefix}.bias`) : undefined,
    };
  }

  /** `<prefix>.{weight,bias}` of a LayerNorm with `eps`. */
  layerNorm(prefix: string, eps: number): LayerNorm {
    return { weight: this.tensor(`${prefix}.weight`), bias: this.tensor(`${prefix}.bias`), eps };
  }

  /** Conv weight `<prefix>.weight` [D, C, p, p] → [p·p·C, D] (see `patchEmbed`), and its bias. */
  patchEmbed(prefix: string): Linear {
    return {
      weight: this.derived(`${prefix}.weight`, (w) => {
        const [d, c, p] = w.shape;
        return tf.reshape(tf.transpose(w, [2, 3, 1, 0]), [p * p * c, d]);
      }) as tf.Tensor2D,
      bias: this.tensor(`${prefix}.bias`),
    };
  }

  /** Attention block `<prefix>.{qkv,proj}`. */
  attention(prefix: string, numHeads: number, qkvBias: boolean): Attention {
    return { qkv: this.linear(`${prefix}.qkv`, qkvBias), proj: this.linear(`${prefix}.proj`), numHeads };
  }

  /** MLP `<prefix>.{fc1,fc2}`. */
  mlp(prefix: string): Mlp {
    return { fc1: this.linear(`${prefix}.fc1`), fc2: this.linear(`${prefix}.fc2`) };
  }
}

function stored(tensors: ReadonlyMap<string, tf.Tensor>, key: string): tf.Tensor {
  const t = tensors.get(key);
  if (!t) throw new Error(`internal: parameter "${key}" was not loaded`); // keys are checked before building
  return t;
}

/**
 * Load-time parameters: each rearranged tensor is computed once (inside `tf.tidy`) and its timm-layout original
 * freed. Every tensor handed out is recorded in `owned` (the model frees them on dispose).
 */
export class ParameterTable extends ParameterSource {
  readonly owned: tf.Tensor[] = [];
  readonly #tensors: Map<string, tf.Tensor>;

  /** Takes ownership of `tensors` (timm key → tensor in timm's shape). */
  constructor(tensors: Map<string, tf.Tensor>) {
    super();
    this.#tensors = tensors;
  }

  /** The tensor of `key` as stored. */
  tensor<T extends tf.Tensor>(key: string): T {
    const t = stored(this.#tensors, key);
    this.owned.push(t);
    return t as T;
  }

  /** A tensor computed from the stored `key` by `f` (inside `tf.tidy`); the stored one is freed. */
  derived(key: string, f: (t: tf.Tensor) => tf.Tensor): tf.Tensor {
    const original = stored(this.#tensors, key);
    const t = tf.tidy(() => f(original));
    original.dispose();
    this.owned.push(t);
    return t;
  }
}

/**
 * Training-time parameters: the tensors (typically `tf.Variable`s in timm layout) are used as they are and every
 * rearrangement is recomputed on each call, in the caller's scope, so that `tf.grads`/`tf.variableGrads` around
 * the forward differentiate with respect to the timm-layout tensors. Owns and frees nothing.
 */
export class LiveParameters extends ParameterSource {
  readonly #tensors: ReadonlyMap<string, tf.Tensor>;

  /** Borrows `tensors` (timm key → tensor in timm's shape). */
  constructor(tensors: ReadonlyMap<string, tf.Tensor>) {
    super();
    this.#tensors = tensors;
  }

  /** The tensor of `key` as stored. */
  tensor<T extends tf.Tensor>(key: string): T {
    return stored(this.#tensors, key) as T;
  }

  /** `f` of the stored tensor of `key`, computed now. */
  derived(key: string, f: (t: tf.Tensor) => tf.Tensor): tf.Tensor {
    return f(stored(this.#tensors, key));
  }
}
