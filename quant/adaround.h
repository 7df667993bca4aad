// AdaRound: learned rounding of the weights (Nagel et al., "Up or Down? Adaptive Rounding for
// Post-Training Quantization", ICML 2020; AIMET implements it).
//
// Note [AdaRound]
// Nearest rounding minimizes each weight's own error, not the layer's output error: two
// weights that both round up can err together on every input. AdaRound chooses, per weight,
// floor or ceil on the quantizer's fixed grid (scale s, zero point z from calibration):
//     W̃ = s·(clamp(⌊W/s⌋ + h(V) + z, qmin, qmax) − z),
//     h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1),  ζ = 1.1, γ = −0.1      (the rectified sigmoid)
// and learns V, layer by layer in network order, by minimizing on cached calibration images
//     ‖f(W̃·x̂ + b) − f(W·x + b)‖² + λ·Σ(1 − |2h(V) − 1|^β)
// x̂ being the layer's input in the quantized model whose earlier layers are already rounded,
// x its input in the float model (the asymmetric reconstruction of the paper's §4), f the
// layer's own ReLU where it has one, the squared norm summed over output channels and
// averaged over images and positions. The regularizer is off for the warm start (a fraction
// of the iterations), then pushes every h to 0 or 1 while β decays linearly from its start to
// its end value (AIMET's schedule). Adam; V starts where h(V) is the fractional part of W/s,
// i.e. at nearest rounding's soft equivalent. At the end h is rounded (h ≥ 0.5: up), so each
// code is floor or floor + 1 — at most one step from nearest rounding.
//
// The float model is the prepared model with every quantizer off and the original weights of
// already rounded layers swapped back in; each layer's float input and quantized input come
// from two passes of the calibration images (the same images in the same order), and the
// float targets f(W·x + b) are computed once per layer. The optimization is a GEMM loop over
// the cached inputs laid out as im2col rows: forward Y = X̂·W̃ᵀ, the weight gradient
// dW̃ = dYᵀ·X̂, both in place on a batch of consecutive cached images from a random start (the
// cache is in the loader's shuffled order, so no per-step gather copies the inputs).
//
// The learned weights are written into the model on the grid: s·(q − z) (divided by the
// batch norm's folding factor where one folds in). The quantizer's scale is unchanged and its
// observer off, so fake quantization and convert both map each weight back to exactly its
// learned code q: the simulation, the .qf and the .qfm hold AdaRound's rounding, never nearest.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nn/module.h"

namespace qforge::quant {

struct AdaRoundOptions {
  int64_t iterations = 10000;
  double regularization = 0.01;  // λ
  double beta_start = 20, beta_end = 2;
  double warm_start = 0.2;  // the fraction of iterations without the regularizer
  int64_t images = 1024;    // calibration images cached per layer
  int64_t batch = 32;       // images per step
  double lr = 1e-3;         // Adam's
  uint64_t seed = 0;        // where each step's batch starts
};

// The pieces, exposed for the hand-computed tests.
inline constexpr float kAdaRoundZeta = 1.1f, kAdaRoundGamma = -0.1f;
float rectified_sigmoid(float v);                                         // h(V)
float rectified_sigmoid_inverse(float h);                                 // V with h(V) = h, for h in (0, 1)
float rounding_regularizer(float h, double beta);                         // 1 − |2h − 1|^β
double annealed_beta(const AdaRoundOptions& options, int64_t iteration);  // β at a step
bool is_regularized(const AdaRoundOptions& options, int64_t iteration);   // after the warm start

struct AdaRoundedLayer {
  std::string name;
  int64_t weights = 0;
  int64_t changed = 0;       // codes other than nearest rounding's
  double loss_nearest = 0;   // the reconstruction loss over the cache, nearest rounding
  double loss_adaround = 0;  // ... with the learned (hard) rounding
  double seconds = 0;
};
struct AdaRoundReport {
  std::vector<AdaRoundedLayer> layers;
  std::vector<std::string> skipped;  // quantized layers AdaRound does not round (binary weights)
};

// Rounds the weights of every conv/linear with quantized weights of a prepared, calibrated
// model in place (observers off, fake quantization on, as calibration leaves it).
// run_images forwards the calibration images through `model` (eval mode, no gradients), the
// same images in the same order at every call; it is called twice per layer. on_layer, if
// set, hears of each layer when it is done (progress).
AdaRoundReport adaround(nn::Module& model, const AdaRoundOptions& options,
                        const std::function<void()>& run_images,
                        const std::function<void(const AdaRoundedLayer&)>& on_layer = {});

}  // namespace qforge::quant
