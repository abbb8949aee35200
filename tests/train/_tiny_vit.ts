/** The tiny ViT the training tests share: 32 px, patch 8, width 32, depth 2, average pooling. */
import type { TimmConfigInput } from "../../lib/models/registry.ts";

/** timm config of the tiny test ViT. */
export const tinyVit: TimmConfigInput = {
  architecture: "vit",
  imgSize: 32,
  patchSize: 8,
  embedDim: 32,
  depth: 2,
  numHeads: 2,
  globalPool: "avg",
};
