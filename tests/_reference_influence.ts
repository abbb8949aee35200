/** Float64 reference of Theorem B for tests: g_i = −∇L_valᵀ H⁻¹ ∇ℓ_i with the dense Hessian and Cholesky. */
import { choleskySolve } from "../lib/carrot/_linalg.ts";
import { hessian64, probabilities64, type Problem64 } from "./_reference_head.ts";

/** ∂L_val/∂α_i for all i at the float64 minimiser `w` (flat [K, d+1]), L_val the mean CE over (xVal, yVal). */
export function alphaGradient64(
  problem: Problem64,
  w: Float64Array,
  xVal: Float64Array[],
  yVal: Int32Array,
): Float64Array {
  const k = problem.numClasses, width = problem.x[0].length + 1, size = k * width;
  const gVal = new Float64Array(size);
  xVal.forEach((x, j) => {
    const h = [...x, 1], p = probabilities64(w, Float64Array.from(h), k);
    for (let c = 0; c < k; c++) {
      for (let a = 0; a < width; a++) {
        gVal[c * width + a] += (p[c] - (c === yVal[j] ? 1 : 0)) * h[a] / xVal.length;
      }
    }
  });
  const s = choleskySolve(hessian64(problem, w), size, gVal);
  return Float64Array.from(problem.x, (x, i) => {
    const h = [...x, 1], p = probabilities64(w, Float64Array.from(h), k);
    let g = 0;
    for (let c = 0; c < k; c++) {
      let sh = 0;
      for (let a = 0; a < width; a++) sh += s[c * width + a] * h[a];
      g -= (p[c] - (c === problem.y[i] ? 1 : 0)) * sh;
    }
    return g;
  });
}
