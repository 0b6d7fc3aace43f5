// MML's per-negative penalty and its gradient, each in one pass (mmlrepro.losses.margin_penalty,
// SPEC §5):
//
//   forward:   p = Σ_k w_k·relu(s − m_k)           elementwise, k = 0, 1, ..., K − 1
//   backward:  ∂s = Σ_k [s − m_k > 0]·(g·w_k)      summed from k = K − 1 down to k = 0
//
// The PyTorch form (a loop over the K margins) makes about 4K passes forward and 4K backward
// over the [B, N] scores and keeps K relu outputs for the backward. Here each score is read
// from memory once and written once a pass (a chunk stays in cache across the K margins), and
// it is read where it lies (the negatives' columns of the [B, 1 + N] scores), and the operations and their order are those of the PyTorch
// form element by element, in the scores' precision: s − m_k, relu, ·w_k, the running sum in
// k order forward; backward the K terms added in the order autograd adds them (last margin
// first). The build passes -ffp-contract=off: no fused multiply-adds. So both forms give the
// same bits (tests/test_kernels.py), and a run is the same whichever computed its penalty.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace {

constexpr int64_t GRAIN = 16384;   // scores per task, at least
constexpr int64_t CHUNK = 1024;    // scores a margin's loop runs over before the next margin's

// relu as PyTorch's: NaN stays NaN (the comparison is false for it)
template <typename T>
inline T relu(T x) { return x < T(0) ? T(0) : x; }

// The scores are rows × cols with unit stride along a row (the negatives' columns of the batch's
// [B, 1 + N] scores, for one); the results are written densely. Every inner loop runs over the
// scores of a chunk of a row for one margin, so it vectorises; the margins follow one another
// per chunk, so each score sees its operations in the order of the formula.
template <typename T, typename F>
void for_chunks(int64_t rows, int64_t cols, F&& body) {
  const int64_t grain = std::max<int64_t>(1, GRAIN / std::max<int64_t>(cols, 1));
  at::parallel_for(0, rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r)
      for (int64_t c = 0; c < cols; c += CHUNK) body(r, c, std::min(CHUNK, cols - c));
  });
}

template <typename T>
void forward_impl(const T* s, int64_t row_stride, T* out, const std::vector<T>& m,
                  const std::vector<T>& w, int64_t rows, int64_t cols) {
  const int64_t K = static_cast<int64_t>(m.size());
  for_chunks<T>(rows, cols, [&](int64_t r, int64_t c, int64_t len) {
    const T* x = s + r * row_stride + c;
    T* acc = out + r * cols + c;
    const T m0 = m[0], w0 = w[0];
    for (int64_t e = 0; e < len; ++e) acc[e] = relu<T>(x[e] - m0) * w0;
    for (int64_t k = 1; k < K; ++k) {
      const T mk = m[k], wk = w[k];
      for (int64_t e = 0; e < len; ++e) acc[e] = acc[e] + relu<T>(x[e] - mk) * wk;
    }
  });
}

template <typename T>
void backward_impl(const T* g, const T* s, int64_t row_stride, T* out, const std::vector<T>& m,
                   const std::vector<T>& w, int64_t rows, int64_t cols) {
  const int64_t K = static_cast<int64_t>(m.size());
  for_chunks<T>(rows, cols, [&](int64_t r, int64_t c, int64_t len) {
    const T* x = s + r * row_stride + c;
    const T* ge = g + r * cols + c;
    T* acc = out + r * cols + c;
    const T ml = m[K - 1], wl = w[K - 1];
    for (int64_t e = 0; e < len; ++e) acc[e] = (x[e] - ml) > T(0) ? ge[e] * wl : T(0);
    for (int64_t k = K - 2; k >= 0; --k) {
      const T mk = m[k], wk = w[k];
      for (int64_t e = 0; e < len; ++e) acc[e] = acc[e] + ((x[e] - mk) > T(0) ? ge[e] * wk : T(0));
    }
  });
}

template <typename T>
std::vector<T> as(const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); }

void check(const at::Tensor& s, const std::vector<double>& margins, const std::vector<double>& weights) {
  TORCH_CHECK(s.dim() == 2 && s.stride(1) == 1 && !margins.empty() && margins.size() == weights.size(),
              "margin_penalty kernel: 2-D scores with unit stride along a row, and as many weights "
              "as margins (K >= 1)");
}

}  // namespace

// Σ_k w_k·relu(s − m_k) of each score, as a new [rows, cols] tensor.
at::Tensor margin_penalty_forward(const at::Tensor& s, std::vector<double> margins,
                                  std::vector<double> weights) {
  check(s, margins, weights);
  auto out = at::empty(s.sizes(), s.options());
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "margin_penalty_forward", [&] {
    forward_impl<scalar_t>(s.data_ptr<scalar_t>(), s.stride(0), out.data_ptr<scalar_t>(),
                           as<scalar_t>(margins), as<scalar_t>(weights), s.size(0), s.size(1));
  });
  return out;
}

// ∂/∂s from the gradient of the penalties (any layout; made dense [rows, cols] here).
at::Tensor margin_penalty_backward(const at::Tensor& grad, const at::Tensor& s,
                                   std::vector<double> margins, std::vector<double> weights) {
  check(s, margins, weights);
  auto g = grad.to(s.scalar_type()).expand(s.sizes()).contiguous();
  auto out = at::empty(s.sizes(), s.options());
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "margin_penalty_backward", [&] {
    backward_impl<scalar_t>(g.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), s.stride(0),
                            out.data_ptr<scalar_t>(), as<scalar_t>(margins), as<scalar_t>(weights),
                            s.size(0), s.size(1));
  });
  return out;
}
