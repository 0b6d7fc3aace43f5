// The cosine scores of a batch's gathered rows, forward and backward (mmlrepro.kernels; the
// formulas are those of mmlrepro.models.gathered_cosine, SPEC §3).
//
//   forward:   n_p = ||e_r||, s_p = <u_b, e_r> / max(n_p, eps)   for each pair p = (b, k),
//              r = idx[b, k] its table row
//   backward:  a_p = g_p / max(n_p, eps),  c_p = a_p·s_p / max(n_p, eps) (0 where n_p < eps)
//              ∂u_b = Σ_k a_p e_r                      (in order of k)
//              ∂table_r = Σ_{p: idx_p = r} (a_p u_b − c_p e_r)   (in the batch's order)
//
// The pairs are grouped by table row once (a stable counting sort, forward), and both passes
// over the table run row by row: each row is read once however often it was drawn (at
// N = 800 a Gowalla row is drawn about five times a step), its gradient row written once,
// the rows not drawn written 0: the dense table gradient in one sequential pass, with no
// [B, K, d] block and no scattered read-modify-writes. ∂u reads the rows in the batch's order,
// prefetched. Threads split the rows (and the users for ∂u), and every sum runs in the same
// order at any thread count. Dot products and norms sum into LANES partial sums in order of
// the element, then add up as a fixed tree, and the build passes -ffp-contract=off: the
// result does not depend on the vector width the compiler picks.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace {

constexpr int64_t LANES = 16;      // partial sums of a dot product
constexpr int64_t PREFETCH = 16;   // pairs ahead: a row is fetched this many pairs before its use
constexpr int64_t GRAIN = 256;     // table rows per task, at least

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

// <x, y> over d elements: lane l sums the elements j ≡ l (mod LANES) in order of j.
template <typename T>
inline T dot(const T* x, const T* y, int64_t d) {
  typedef typename Lanes<T>::vec vec;
  vec a = {};
  int64_t j = 0;
  for (; j + LANES <= d; j += LANES) {
    vec xv, yv;
    std::memcpy(&xv, x + j, sizeof(vec));
    std::memcpy(&yv, y + j, sizeof(vec));
    a += xv * yv;
  }
  T s[LANES];
  std::memcpy(s, &a, sizeof(vec));
  for (int64_t l = 0; j + l < d; ++l) s[l] += x[j + l] * y[j + l];
  return tree_sum(s);
}

// Every cache line of a row: rows read in random order are followed by no hardware prefetcher.
template <typename T>
inline void prefetch_row(const T* row, int64_t d) {
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t o = 0; o < d * static_cast<int64_t>(sizeof(T)); o += 64) __builtin_prefetch(p + o, 0, 3);
}

// Stable counting sort of the pairs by row: the pairs of row r are order[starts[r]..starts[r+1])
// in the batch's order, order[0][q] the pair's index p = b·K + k and order[1][q] its user b.
void group_by_row(const int64_t* idx, int64_t B, int64_t K, int64_t n, int64_t* starts,
                  int32_t* pair, int32_t* user) {
  std::fill(starts, starts + n + 1, 0);
  for (int64_t p = 0; p < B * K; ++p) ++starts[idx[p] + 1];
  for (int64_t r = 0; r < n; ++r) starts[r + 1] += starts[r];
  std::vector<int64_t> next(starts, starts + n);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t p = b * K; p < (b + 1) * K; ++p) {
      const int64_t q = next[idx[p]]++;
      pair[q] = static_cast<int32_t>(p);
      user[q] = static_cast<int32_t>(b);
    }
}

template <typename T>
void forward_impl(const T* u, const T* table, const int64_t* starts, const int32_t* pair,
                  const int32_t* user, T* scores, T* norms, int64_t n, int64_t d, T eps) {
  at::parallel_for(0, n, GRAIN, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (starts[r] == starts[r + 1]) continue;
      const T* e = table + r * d;
      const T norm = std::sqrt(dot(e, e, d));
      const T denom = std::max(norm, eps);
      for (int64_t q = starts[r]; q < starts[r + 1]; ++q) {
        norms[pair[q]] = norm;
        scores[pair[q]] = dot(u + user[q] * d, e, d) / denom;
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

template <typename T>
void grad_u_impl(const T* a, const T* table, const int64_t* idx, T* grad_u, int64_t B, int64_t K,
                 int64_t d) {
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::fill(grad_u + b0 * d, grad_u + b1 * d, T(0));
    for (int64_t b = b0; b < b1; ++b) {
      T* gu = grad_u + b * d;
      for (int64_t p = b * K; p < (b + 1) * K; ++p) {
        if (p + PREFETCH < b1 * K) prefetch_row(table + idx[p + PREFETCH] * d, d);
        const T* e = table + idx[p] * d;
        const T ap = a[p];
        for (int64_t j = 0; j < d; ++j) gu[j] += ap * e[j];
      }
    }
  });
}

template <typename T>
void grad_table_impl(const T* a, const T* c, const T* u, const T* table, const int64_t* starts,
                     const int32_t* pair, const int32_t* user, T* grad_table, int64_t n,
                     int64_t d) {
  at::parallel_for(0, n, GRAIN, [&](int64_t r0, int64_t r1) {
    std::fill(grad_table + r0 * d, grad_table + r1 * d, T(0));
    for (int64_t r = r0; r < r1; ++r) {
      const T* e = table + r * d;
      T* g = grad_table + r * d;
      for (int64_t q = starts[r]; q < starts[r + 1]; ++q) {
        const T ap = a[pair[q]], cp = c[pair[q]];
        const T* ub = u + user[q] * d;
        for (int64_t j = 0; j < d; ++j) g[j] += ap * ub[j] - cp * e[j];
      }
    }
  });
}

void check(const at::Tensor& u, const at::Tensor& table, const at::Tensor& idx) {
  TORCH_CHECK(u.device().is_cpu() && table.device().is_cpu() && idx.device().is_cpu(),
              "gathered_cosine kernel: CPU tensors only");
  TORCH_CHECK(u.dim() == 2 && table.dim() == 2 && idx.dim() == 2 && idx.size(0) == u.size(0) &&
                  table.size(1) == u.size(1),
              "gathered_cosine kernel: need u [B, d], table [n, d], idx [B, K]");
  TORCH_CHECK(u.scalar_type() == table.scalar_type(),
              "gathered_cosine kernel: u and table differ in dtype");
  TORCH_CHECK(idx.scalar_type() == at::kLong, "gathered_cosine kernel: idx must be int64");
  TORCH_CHECK(u.is_contiguous() && table.is_contiguous() && idx.is_contiguous(),
              "gathered_cosine kernel: contiguous tensors only");
  TORCH_CHECK(idx.numel() < std::numeric_limits<int32_t>::max(),
              "gathered_cosine kernel: over 2^31 pairs");
}

}  // namespace

// (scores [B, K], norms [B, K], starts [n + 1], order [2, B·K]): the scores and the row norms,
// and the pairs grouped by row for the backward.
std::vector<at::Tensor> forward(const at::Tensor& u, const at::Tensor& table, const at::Tensor& idx,
                                double eps) {
  check(u, table, idx);
  const int64_t B = idx.size(0), K = idx.size(1), n = table.size(0), d = u.size(1);
  const int64_t* ip = idx.data_ptr<int64_t>();
  const auto bounds = std::minmax_element(ip, ip + idx.numel());
  TORCH_CHECK(idx.numel() == 0 || (*bounds.first >= 0 && *bounds.second < n),
              "gathered_cosine kernel: index out of range for a table of ", n, " rows");
  auto starts = at::empty({n + 1}, idx.options());
  auto order = at::empty({2, B * K}, idx.options().dtype(at::kInt));
  group_by_row(ip, B, K, n, starts.data_ptr<int64_t>(), order[0].data_ptr<int32_t>(),
               order[1].data_ptr<int32_t>());
  auto scores = at::empty(idx.sizes(), u.options());
  auto norms = at::empty(idx.sizes(), u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "gathered_cosine_forward", [&] {
    forward_impl<scalar_t>(u.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                           starts.data_ptr<int64_t>(), order[0].data_ptr<int32_t>(),
                           order[1].data_ptr<int32_t>(), scores.data_ptr<scalar_t>(),
                           norms.data_ptr<scalar_t>(), n, d, static_cast<scalar_t>(eps));
  });
  return {scores, norms, starts, order};
}

// (∂u, or an empty tensor unless want_u; the dense ∂table [n, d], or an empty tensor unless
// want_table), from forward's outputs.
std::vector<at::Tensor> backward(const at::Tensor& grad, const at::Tensor& u,
                                 const at::Tensor& table, const at::Tensor& idx,
                                 const at::Tensor& scores, const at::Tensor& norms,
                                 const at::Tensor& starts, const at::Tensor& order, double eps,
                                 bool want_u, bool want_table) {
  check(u, table, idx);
  const int64_t B = idx.size(0), K = idx.size(1), n = table.size(0), d = u.size(1);
  TORCH_CHECK(grad.sizes() == idx.sizes() && scores.sizes() == idx.sizes() &&
                  norms.sizes() == idx.sizes() && starts.numel() == n + 1 &&
                  order.size(1) == B * K,
              "gathered_cosine kernel: backward inputs do not match the forward's");
  auto a = grad.to(u.scalar_type()).contiguous().clone();
  auto c = at::empty_like(a);
  auto grad_u = want_u ? at::empty_like(u) : at::empty({0}, u.options());
  auto grad_table = want_table ? at::empty_like(table) : at::empty({0}, table.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "gathered_cosine_backward", [&] {
    scalar_t* ap = a.data_ptr<scalar_t>();
    scalar_t* cp = c.data_ptr<scalar_t>();
    coefficients<scalar_t>(ap, cp, scores.contiguous().data_ptr<scalar_t>(),
                           norms.contiguous().data_ptr<scalar_t>(), B * K,
                           static_cast<scalar_t>(eps));
    if (want_u)
      grad_u_impl<scalar_t>(ap, table.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
                            grad_u.data_ptr<scalar_t>(), B, K, d);
    if (want_table)
      grad_table_impl<scalar_t>(ap, cp, u.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                                starts.data_ptr<int64_t>(), order[0].data_ptr<int32_t>(),
                                order[1].data_ptr<int32_t>(), grad_table.data_ptr<scalar_t>(),
                                n, d);
  });
  return {grad_u, grad_table};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "gathered cosine scores, row norms and the pairs grouped by row");
  m.def("backward", &backward, "gathered cosine gradients: (grad_u, dense grad_table)");
}
