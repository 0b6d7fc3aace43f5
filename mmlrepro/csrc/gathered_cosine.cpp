// The cosine scores of a batch's gathered rows, forward and backward, in one pass each
// (mmlrepro.kernels; the formulas are mmlrepro.models.gathered_cosine's, SPEC §3).
//
//   forward:   n_bk = ||e_bk||, s_bk = <u_b, e_bk> / max(n_bk, eps),   e_bk = table[idx[b, k]]
//   backward:  a = g / max(n, eps),  c = a·s / max(n, eps) (0 where n < eps)
//              ∂u_b = Σ_k a_bk e_bk,  ∂table[idx[b, k]] += a_bk u_b − c_bk e_bk
//
// No [B, K, d] block is ever written: each row is read from the table where it is used and
// its gradient added straight into a dense [n, d] gradient. Dot products and norms sum into
// LANES partial sums in a fixed order, then a fixed tree: the result does not depend on the
// vector width the compiler picks (the build passes -ffp-contract=off, so no fused multiply-
// adds either). The table's gradient is built by T threads each owning a range of rows and
// adding that range's row gradients in the batch's order, so it is the same at any T.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace {

constexpr int64_t LANES = 16;      // partial sums of a dot product
constexpr int64_t PREFETCH = 16;   // pairs ahead: a row is fetched this many pairs before its use

template <typename T>
struct Lanes {
  typedef T vec __attribute__((vector_size(LANES * sizeof(T))));
};

template <typename T>
inline T tree_sum(T* acc) {
  for (int64_t w = LANES / 2; w > 0; w /= 2)
    for (int64_t l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// <x, y> and <y, y> over d elements: lane l sums the elements j ≡ l (mod LANES) in order of j,
// then the LANES sums add up as a fixed tree.
template <typename T>
inline void dot_and_square(const T* x, const T* y, int64_t d, T& xy, T& yy) {
  typedef typename Lanes<T>::vec vec;
  vec a = {}, b = {};
  int64_t j = 0;
  for (; j + LANES <= d; j += LANES) {
    vec xv, yv;
    std::memcpy(&xv, x + j, sizeof(vec));
    std::memcpy(&yv, y + j, sizeof(vec));
    a += xv * yv;
    b += yv * yv;
  }
  T sa[LANES], sb[LANES];
  std::memcpy(sa, &a, sizeof(vec));
  std::memcpy(sb, &b, sizeof(vec));
  for (int64_t l = 0; j + l < d; ++l) {
    sa[l] += x[j + l] * y[j + l];
    sb[l] += y[j + l] * y[j + l];
  }
  xy = tree_sum(sa);
  yy = tree_sum(sb);
}

// Every cache line of a row: the rows are read in random order, which no hardware prefetcher
// follows, and a row of 64 floats spans four lines.
template <typename T>
inline void prefetch_row(const T* row, int64_t d, bool write = false) {
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t o = 0; o < d * static_cast<int64_t>(sizeof(T)); o += 64) {
    if (write)
      __builtin_prefetch(p + o, 1, 3);
    else
      __builtin_prefetch(p + o, 0, 3);
  }
}

template <typename T>
void forward_impl(const T* u, const T* table, const int64_t* idx, T* scores, T* norms,
                  int64_t B, int64_t K, int64_t d, T eps) {
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    const int64_t end = b1 * K;
    for (int64_t b = b0; b < b1; ++b) {
      const T* ub = u + b * d;
      for (int64_t i = b * K; i < (b + 1) * K; ++i) {
        if (i + PREFETCH < end) prefetch_row(table + idx[i + PREFETCH] * d, d);
        T xy, yy;
        dot_and_square(ub, table + idx[i] * d, d, xy, yy);
        const T n = std::sqrt(yy);
        norms[i] = n;
        scores[i] = xy / std::max(n, eps);
      }
    }
  });
}

// a = g / max(n, eps) in place of g, and c = a·s / max(n, eps) (0 where n < eps).
template <typename T>
void coefficients(T* a, T* c, const T* scores, const T* norms, int64_t size, T eps) {
  for (int64_t i = 0; i < size; ++i) {
    const T denom = std::max(norms[i], eps);
    a[i] = a[i] / denom;
    c[i] = norms[i] >= eps ? a[i] * scores[i] / denom : T(0);
  }
}

// The pairs of rows b0..b1, in order, with their rows [lo, hi) of the table: ∂u_b += a_bk e_bk
// (when grad_u) and grad_table[idx[b, k]] += a_bk u_b − c_bk e_bk (when grad_table).
template <typename T>
void backward_pass(const T* a, const T* c, const T* u, const T* table, const int64_t* idx,
                   T* grad_u, T* grad_table, int64_t b0, int64_t b1, int64_t lo, int64_t hi,
                   int64_t K, int64_t d) {
  const int64_t end = b1 * K;
  for (int64_t b = b0; b < b1; ++b) {
    const T* ub = u + b * d;
    T* gu = grad_u ? grad_u + b * d : nullptr;
    for (int64_t i = b * K; i < (b + 1) * K; ++i) {
      if (i + PREFETCH < end) {
        const int64_t ahead = idx[i + PREFETCH];
        if (ahead >= lo && ahead < hi) {
          prefetch_row(table + ahead * d, d);
          if (grad_table) prefetch_row(grad_table + ahead * d, d, true);
        }
      }
      const int64_t r = idx[i];
      if (r < lo || r >= hi) continue;
      const T* e = table + r * d;
      const T ai = a[i], ci = c[i];
      if (gu)
        for (int64_t j = 0; j < d; ++j) gu[j] += ai * e[j];
      if (grad_table) {
        T* g = grad_table + r * d;
        for (int64_t j = 0; j < d; ++j) g[j] += ai * ub[j] - ci * e[j];
      }
    }
  }
}

// One pass over the pairs on one thread; on T threads ∂u in parallel over b, then the table's
// gradient with each thread adding the pairs whose row lies in its own T-th of the rows. Every
// sum runs in the batch's order either way, so the result is the same at any thread count.
template <typename T>
void backward_impl(const T* a, const T* c, const T* u, const T* table, const int64_t* idx,
                   T* grad_u, T* grad_table, int64_t n, int64_t B, int64_t K, int64_t d) {
  if (grad_u) std::fill(grad_u, grad_u + B * d, T(0));
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
  if (parts == 1 || at::in_parallel_region()) {
    backward_pass(a, c, u, table, idx, grad_u, grad_table, 0, B, 0, n, K, d);
    return;
  }
  if (grad_u)
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      backward_pass<T>(a, c, u, table, idx, grad_u, nullptr, b0, b1, 0, n, K, d);
    });
  if (grad_table)
    at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
      backward_pass<T>(a, c, u, table, idx, nullptr, grad_table, 0, B, n * p0 / parts,
                       n * p1 / parts, K, d);
    });
}

void check(const at::Tensor& u, const at::Tensor& table, const at::Tensor& idx) {
  TORCH_CHECK(u.device().is_cpu() && table.device().is_cpu() && idx.device().is_cpu(),
              "gathered_cosine kernel: CPU tensors only");
  TORCH_CHECK(u.dim() == 2 && table.dim() == 2 && idx.dim() == 2 && idx.size(0) == u.size(0) &&
                  table.size(1) == u.size(1),
              "gathered_cosine kernel: need u [B, d], table [n, d], idx [B, K]");
  TORCH_CHECK(u.scalar_type() == table.scalar_type(), "gathered_cosine kernel: u and table differ in dtype");
  TORCH_CHECK(idx.scalar_type() == at::kLong, "gathered_cosine kernel: idx must be int64");
  TORCH_CHECK(u.is_contiguous() && table.is_contiguous() && idx.is_contiguous(),
              "gathered_cosine kernel: contiguous tensors only");
  const int64_t* p = idx.data_ptr<int64_t>();
  const auto bounds = std::minmax_element(p, p + idx.numel());
  TORCH_CHECK(idx.numel() == 0 || (*bounds.first >= 0 && *bounds.second < table.size(0)),
              "gathered_cosine kernel: index out of range for a table of ", table.size(0), " rows");
}

}  // namespace

// (scores [B, K], norms [B, K])
std::vector<at::Tensor> forward(const at::Tensor& u, const at::Tensor& table, const at::Tensor& idx,
                                double eps) {
  check(u, table, idx);
  auto scores = at::empty(idx.sizes(), u.options());
  auto norms = at::empty(idx.sizes(), u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "gathered_cosine_forward", [&] {
    forward_impl<scalar_t>(u.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                           idx.data_ptr<int64_t>(), scores.data_ptr<scalar_t>(),
                           norms.data_ptr<scalar_t>(), idx.size(0), idx.size(1), u.size(1),
                           static_cast<scalar_t>(eps));
  });
  return {scores, norms};
}

// ∂u (an empty tensor unless want_u), and the table's row gradients added into grad_table
// (a dense [n, d] tensor; none when it is undefined).
at::Tensor backward(const at::Tensor& grad, const at::Tensor& u, const at::Tensor& table,
                    const at::Tensor& idx, const at::Tensor& scores, const at::Tensor& norms,
                    double eps, bool want_u, c10::optional<at::Tensor> grad_table) {
  check(u, table, idx);
  TORCH_CHECK(!grad_table.has_value() || (grad_table->sizes() == table.sizes() &&
                                          grad_table->scalar_type() == table.scalar_type() &&
                                          grad_table->is_contiguous()),
              "gathered_cosine kernel: grad_table must be a contiguous tensor like table");
  auto a = grad.contiguous().clone();
  auto c = at::empty_like(a);
  auto grad_u = want_u ? at::empty_like(u) : at::empty({0}, u.options());
  const int64_t B = idx.size(0), K = idx.size(1), d = u.size(1);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "gathered_cosine_backward", [&] {
    coefficients<scalar_t>(a.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(),
                           scores.contiguous().data_ptr<scalar_t>(),
                           norms.contiguous().data_ptr<scalar_t>(), B * K,
                           static_cast<scalar_t>(eps));
    backward_impl<scalar_t>(a.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(),
                            table.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
                            want_u ? grad_u.data_ptr<scalar_t>() : nullptr,
                            grad_table.has_value() ? grad_table->data_ptr<scalar_t>() : nullptr,
                            table.size(0), B, K, d);
  });
  return grad_u;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "gathered cosine scores and row norms");
  m.def("backward", &backward, "gathered cosine gradients");
}
