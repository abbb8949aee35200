/**
 * AdamW — Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 — as `torch.optim.AdamW`
 * computes it. For a parameter θ with gradient g at update t = 1, 2, …, learning rate η and decay w:
 *   θ ← θ (1 − η w)                                    (decoupled: not part of the gradient or the moments)
 *   m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
 *   θ ← θ − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
 */
import * as tf from "@tensorflow/tfjs";

/** β₁, β₂, ε (PyTorch's defaults 0.9, 0.999, 1e-8). */
export interface AdamWSettings {
  beta1: number;
  beta2: number;
  eps: number;
}

/** Per-parameter η and w of one update. */
export interface AdamWRates {
  learningRate: number;
  weightDecay: number;
}

/** The optimiser state: the update count t and the moments m, v per parameter key (same shapes). */
export class AdamW {
  readonly settings: AdamWSettings;
  /** Updates taken so far (t of the last update). */
  step: number;
  readonly m: Map<string, tf.Variable>;
  readonly v: Map<string, tf.Variable>;

  /** Zero moments for `params`, or the `restored` state (its tensors are taken over and freed here). */
  constructor(
    params: ReadonlyMap<string, tf.Tensor>,
    settings: AdamWSettings,
    restored?: { step: number; m: Map<string, tf.Tensor>; v: Map<string, tf.Tensor> },
  ) {
    this.settings = settings;
    this.step = restored?.step ?? 0;
    const moments = (which?: Map<string, tf.Tensor>) =>
      new Map([...params].map(([key, p]) => {
        const initial = which?.get(key) ?? tf.zerosLike(p);
        const variable = tf.variable(initial, false);
        initial.dispose(); // the variable holds its own reference to the data
        return [key, variable];
      }));
    this.m = moments(restored?.m);
    this.v = moments(restored?.v);
  }

  /** One update of every parameter in `params` with its gradient in `grads` and its rates (see the module JSDoc). */
  update(
    params: ReadonlyMap<string, tf.Variable>,
    grads: ReadonlyMap<string, tf.Tensor>,
    rates: (key: string) => AdamWRates,
  ): void {
    const { beta1, beta2, eps } = this.settings;
    this.step++;
    const correction1 = 1 - beta1 ** this.step, correction2 = Math.sqrt(1 - beta2 ** this.step);
    for (const [key, theta] of params) {
      const g = grads.get(key)!, m = this.m.get(key)!, v = this.v.get(key)!;
      const { learningRate, weightDecay } = rates(key);
      tf.tidy(() => {
        const mNext = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const vNext = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        const decayed = weightDecay > 0 ? tf.mul(theta, 1 - learningRate * weightDecay) : theta;
        const denominator = tf.add(tf.div(tf.sqrt(vNext), correction2), eps);
        theta.assign(tf.sub(decayed, tf.mul(tf.div(mNext, denominator), learningRate / correction1)));
        m.assign(mNext);
        v.assign(vNext);
      });
    }
  }

  /** Frees the moments. */
  dispose(): void {
    tf.dispose([...this.m.values(), ...this.v.values()]);
  }
}
