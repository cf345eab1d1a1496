// DeepSeek-V3 load balancing for training (architecture page, section 8): the
// auxiliary-loss-free bias update and the complementary sequence-wise balance loss.
#pragma once
#include <stdbool.h>

// After a step: b_i += gamma * sign(mean_load - load_i) for each expert, where load_i is the
// number of (token, slot) assignments expert i received in the batch. The bias only steers
// selection; it gets no gradient. Returns max_load / mean_load (1 = perfectly balanced).
float moe_bias_update(float *bias, const int *load, int E, float gamma);

// Sequence-wise balance loss of one sequence of T tokens, added to the training loss:
//   L = alpha * sum_i f_i P_i,   f_i = E / (K T) * #{t : i selected for t}   (a constant)
//   P_i = (1/T) sum_t s'_{i,t},  s'_{.,t} = s_{.,t} / sum_j s_{j,t}
// with s = sigmoid(logits) (V3) or softmax(logits). logits (T, E) are the router logits,
// idx (T, K) the experts actually selected. dlogits (T, E) += dL/dlogits (may be NULL).
// Returns L.
float moe_balance_loss(const float *logits, const int *idx, int T, int E, int K, bool sigmoid, float alpha,
                       float *dlogits);
