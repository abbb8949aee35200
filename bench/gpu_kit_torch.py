"""The GPU bench kit's PyTorch reference (run by gpu_kit_entry.ts / the bundle, never on its own).

Loads the kit's random timm-layout weights (a .safetensors file written by the TypeScript side) into
`timm.create_model(name, pretrained=False)`, runs `forward_head(forward_features(x), pre_logits=True)` in fp32 with
TF32 off on the given NCHW float32 images, writes the features as raw little-endian float32, and times fp32
throughput on random inputs for each `--bench` batch size (median of `--passes` timed passes after 3 warm-ups, as
REFERENCE.md section 5). Prints one JSON line on stdout. Needs torch and timm only (safetensors is parsed here).
"""

import argparse
import json
import statistics
import struct
import sys
import time

import timm
import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32, "I64": torch.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        begin, end = spec["data_offsets"]
        raw = bytearray(data[base + begin : base + end])
        tensors[name] = torch.frombuffer(raw, dtype=DTYPES[spec["dtype"]]).reshape(spec["shape"]).clone()
    return tensors


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--images", required=True, help="raw float32 NCHW [count, 3, 224, 224]")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--bench", default="", help="comma-separated batch sizes to time (CUDA only)")
    parser.add_argument("--passes", type=int, default=10)
    args = parser.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = timm.create_model(args.model, pretrained=False)
    missing, unexpected = model.load_state_dict(read_safetensors(args.weights), strict=False)
    # timm >= 0.9 keeps Swin's relative_position_index / attn_mask as non-persistent buffers: never in a file.
    missing = [k for k in missing if not k.endswith(("relative_position_index", "attn_mask"))]
    model = model.eval().to(device)

    with open(args.images, "rb") as f:
        raw = bytearray(f.read())
    images = torch.frombuffer(raw, dtype=torch.float32).reshape(args.count, 3, 224, 224).to(device)
    with torch.no_grad():
        features = model.forward_head(model.forward_features(images), pre_logits=True)
    flat = features.float().cpu().flatten().tolist()
    with open(args.out, "wb") as f:
        f.write(struct.pack(f"<{len(flat)}f", *flat))

    report = {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "featureShape": list(features.shape),
        "missingKeys": missing or None,
        "unexpectedKeys": list(unexpected) or None,
        "imagesPerSecond": {},
    }
    if device == "cuda" and args.bench:
        for batch in [int(b) for b in args.bench.split(",") if b]:
            x = torch.randn(batch, 3, 224, 224, device=device)
            times = []
            with torch.no_grad():
                for i in range(3 + args.passes):
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    model.forward_head(model.forward_features(x), pre_logits=True)
                    torch.cuda.synchronize()
                    if i >= 3:
                        times.append(time.perf_counter() - start)
            report["imagesPerSecond"][str(batch)] = batch / statistics.median(times)
    print(json.dumps(report))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
