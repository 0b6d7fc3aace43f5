// The cosine scores of a batch's gathered rows, forward and backward (mmlrepro.kernels; the
// formulas are those of mmlrepro.models.gathered_cosine, SPEC §3).
//
//   forward:   s_p = <u_b, e_r> / max(||e_r||, eps)   for each pair p = (b, k), r = idx[b, k]
//   backward:  a_p = g_p / max(||e_r||, eps),  c_p = a_p·s_p / max(||e_r||, eps) (0 where
//              ||e_r|| < eps),  ∂u_b = Σ_k a_p e_r,  ∂table_r = Σ_{p: idx_p = r} (a_p u_b − c_p e_r)
//
// The pairs are grouped by table row once (a stable counting sort, forward), and both passes
// run row by row: each drawn row is read once however often it was drawn (at N = 800 a Gowalla
// row is drawn about five times a step) and its norm computed once, the user vectors (64 KB
// to 128 KB) stay in cache, the table's gradient is written once, row after row, densely (0
// for the rows not drawn), and ∂u is added up alongside. No [B, K, d] block is written and no
// row is read-modified-written at random. Threads split fixed ranges of rows, and every sum
// runs in an order that does not depend on their number. Dot products and norms sum into LANES
// partial sums in order of the element, then add up as a fixed tree, and the build passes
// -ffp-contract=off: the result does not depend on the vector width the compiler picks or on
// fused multiply-adds.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace {

constexpr int64_t LANES = 16;      // partial sums of a dot product
constexpr int64_t GRAIN = 256;     // table rows per task, at least

inline int64_t pair_of(int64_t packed) { return packed & 0xffffffff; }
inline int64_t user_of(int64_t packed) { return packed >> 32; }

template <typename T, int64_t W>
struct Vec {
  typedef T type __attribute__((vector_size(W * sizeof(T))));
};

// The W lanes of a added up as a tree: lanes l and l + W/2, then the same on the W/2 sums, ...
template <typename T, int64_t W>
inline T tree_sum(typename Vec<T, W>::type a) {
  if constexpr (W == 1) {
    return a[0];
  } else {
    typename Vec<T, W / 2>::type lo, hi;
    std::memcpy(&lo, &a, sizeof(lo));
    std::memcpy(&hi, reinterpret_cast<const char*>(&a) + sizeof(lo), sizeof(hi));
    return tree_sum<T, W / 2>(lo + hi);
  }
}

// <x, y> over d elements: lane l sums the products of the elements j ≡ l (mod LANES) in order
// of j, then the lanes add up as a tree.
template <typename T>
inline T dot(const T* x, const T* y, int64_t d) {
  typedef typename Vec<T, LANES>::type vec;
  vec acc = {};
  int64_t j = 0;
  for (; j + LANES <= d; j += LANES) {
    vec xv, yv;
    std::memcpy(&xv, x + j, sizeof(vec));
    std::memcpy(&yv, y + j, sizeof(vec));
    acc += xv * yv;
  }
  if (j < d) {
    T tail[LANES] = {};
    for (int64_t l = 0; j + l < d; ++l) tail[l] = x[j + l] * y[j + l];
    vec tv;
    std::memcpy(&tv, tail, sizeof(vec));
    acc += tv;
  }
  return tree_sum<T, LANES>(acc);
}

// The same dot products of four x against one y, side by side (each summed exactly as dot).
template <typename T>
inline void dot4(const T* const* x, const T* y, int64_t d, T* out) {
  typedef typename Vec<T, LANES>::type vec;
  if (d % LANES) {
    for (int i = 0; i < 4; ++i) out[i] = dot(x[i], y, d);
    return;
  }
  vec a0 = {}, a1 = {}, a2 = {}, a3 = {};
  for (int64_t j = 0; j < d; j += LANES) {
    vec yv, v0, v1, v2, v3;
    std::memcpy(&yv, y + j, sizeof(vec));
    std::memcpy(&v0, x[0] + j, sizeof(vec));
    std::memcpy(&v1, x[1] + j, sizeof(vec));
    std::memcpy(&v2, x[2] + j, sizeof(vec));
    std::memcpy(&v3, x[3] + j, sizeof(vec));
    a0 += v0 * yv;
    a1 += v1 * yv;
    a2 += v2 * yv;
    a3 += v3 * yv;
  }
  out[0] = tree_sum<T, LANES>(a0);
  out[1] = tree_sum<T, LANES>(a1);
  out[2] = tree_sum<T, LANES>(a2);
  out[3] = tree_sum<T, LANES>(a3);
}

// Stable counting sort of the pairs by row: the pairs of row r are order[starts[r]..starts[r+1])
// in the batch's order, order[q] = b·2^32 + p for pair p = b·K + k of user b. T threads
// each count and place the pairs of their own users, thread t's pairs of a row after those of
// threads < t: the same result as one thread. Refuses an index outside [0, n) before placing.
void group_by_row(const int64_t* idx, int64_t B, int64_t K, int64_t n, int64_t* starts,
                  int64_t* order) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), B));
  std::vector<int32_t> next(parts * n, 0);   // part t's count of row r, then its next slot
  std::vector<char> bad(parts, 0);
  at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int32_t* count = next.data() + t * n;
      for (int64_t p = B * t / parts * K; p < B * (t + 1) / parts * K; ++p) {
        const int64_t r = idx[p];
        if (r < 0 || r >= n) {
          bad[t] = 1;
          break;
        }
        ++count[r];
      }
    }
  });
  TORCH_CHECK(std::find(bad.begin(), bad.end(), 1) == bad.end(),
              "gathered_cosine kernel: index out of range for a table of ", n, " rows");
  int32_t total = 0;
  for (int64_t r = 0; r < n; ++r) {
    starts[r] = total;
    for (int64_t t = 0; t < parts; ++t) {
      const int32_t c = next[t * n + r];
      next[t * n + r] = total;
      total += c;
    }
  }
  starts[n] = total;
  at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int32_t* slot = next.data() + t * n;
      for (int64_t b = B * t / parts; b < B * (t + 1) / parts; ++b)
        for (int64_t p = b * K; p < (b + 1) * K; ++p) {
          order[slot[idx[p]]++] = (b << 32) | p;
        }
    }
  });
}

// Forward, row by row: n_r = ||e_r|| (0 for a row not drawn) and, for each pair of the row,
// s = <u_b, e_r> / max(n_r, eps), written in the batch's order (scores) and in the grouped
// order (grouped, for the backward).
template <typename T>
void forward_impl(const T* u, const T* table, const int64_t* starts, const int64_t* order,
                  T* scores, T* grouped, T* row_norms, int64_t n, int64_t d, T eps) {
  at::parallel_for(0, n, GRAIN, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (starts[r] == starts[r + 1]) {
        row_norms[r] = T(0);
        continue;
      }
      const T* e = table + r * d;
      const T norm = std::sqrt(dot(e, e, d));
      const T denom = std::max(norm, eps);
      row_norms[r] = norm;
      int64_t q = starts[r];
      for (; q + 4 <= starts[r + 1]; q += 4) {
        const T* x[4];
        T s[4];
        for (int i = 0; i < 4; ++i) x[i] = u + user_of(order[q + i]) * d;
        dot4(x, e, d, s);
        for (int i = 0; i < 4; ++i) {
          grouped[q + i] = s[i] / denom;
          scores[pair_of(order[q + i])] = grouped[q + i];
        }
      }
      for (; q < starts[r + 1]; ++q) {
        grouped[q] = dot(u + user_of(order[q]) * d, e, d) / denom;
        scores[pair_of(order[q])] = grouped[q];
      }
    }
  });
}

// Backward, row by row over CHUNKS fixed ranges of rows: with a = g / max(n_r, eps) and
// c = a·s / max(n_r, eps) (0 where n_r < eps) for each pair of row r, the table's gradient row
// Σ (a u_b − c e_r) in the batch's order, and ∂u_b += a e_r into the chunk's own partial ∂u,
// the partials then added in chunk order. The chunks do not depend on the thread count, so
// neither does any sum.
constexpr int64_t CHUNKS = 8;

template <typename T>
void backward_impl(const T* grad, const T* u, const T* table, const int64_t* starts,
                   const int64_t* order, const T* grouped,
                   const T* row_norms, T* grad_u, T* grad_table, int64_t n, int64_t B, int64_t d,
                   T eps) {
  const int64_t chunks = std::min<int64_t>(CHUNKS, std::max<int64_t>(n, 1));
  std::vector<T> partial(grad_u ? chunks * B * d : 0, T(0));
  std::vector<T> g_grouped(starts[n]);   // g in grouped order: the row pass then reads it in order
  at::parallel_for(0, starts[n], 4096, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) g_grouped[q] = grad[pair_of(order[q])];
  });
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      T* gu = grad_u ? partial.data() + chunk * B * d : nullptr;
      for (int64_t r = n * chunk / chunks; r < n * (chunk + 1) / chunks; ++r) {
        const T* e = table + r * d;
        T* g = grad_table ? grad_table + r * d : nullptr;
        if (g) std::fill(g, g + d, T(0));
        const T norm = row_norms[r];
        const T denom = std::max(norm, eps);
        for (int64_t q = starts[r]; q < starts[r + 1]; ++q) {
          const T a = g_grouped[q] / denom;
          const T c = norm >= eps ? a * grouped[q] / denom : T(0);
          const int64_t b = user_of(order[q]);
          const T* ub = u + b * d;
          if (g)
            for (int64_t j = 0; j < d; ++j) g[j] += a * ub[j] - c * e[j];
          if (gu) {
            T* gub = gu + b * d;
            for (int64_t j = 0; j < d; ++j) gub[j] += a * e[j];
          }
        }
      }
    }
  });
  if (!grad_u) return;
  at::parallel_for(0, B * d, 1024, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T sum = partial[i];
      for (int64_t chunk = 1; chunk < chunks; ++chunk) sum += partial[chunk * B * d + i];
      grad_u[i] = sum;
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

// (scores [B, K], and for the backward: starts [n + 1], order [B·K] (user·2^32 + pair), the
// scores in grouped order [B·K], the row norms [n]).
std::vector<at::Tensor> gathered_cosine_forward(const at::Tensor& u, const at::Tensor& table, const at::Tensor& idx,
                                double eps) {
  check(u, table, idx);
  const int64_t B = idx.size(0), K = idx.size(1), n = table.size(0), d = u.size(1);
  auto starts = at::empty({n + 1}, idx.options());
  auto order = at::empty({B * K}, idx.options());
  group_by_row(idx.data_ptr<int64_t>(), B, K, n, starts.data_ptr<int64_t>(),
               order.data_ptr<int64_t>());
  auto scores = at::empty(idx.sizes(), u.options());
  auto grouped = at::empty({B * K}, u.options());
  auto row_norms = at::empty({n}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "gathered_cosine_forward", [&] {
    forward_impl<scalar_t>(u.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                           starts.data_ptr<int64_t>(), order.data_ptr<int64_t>(),
                           scores.data_ptr<scalar_t>(),
                           grouped.data_ptr<scalar_t>(), row_norms.data_ptr<scalar_t>(), n, d,
                           static_cast<scalar_t>(eps));
  });
  return {scores, starts, order, grouped, row_norms};
}

// (∂u, or an empty tensor unless want_u; the dense ∂table [n, d], or an empty tensor unless
// want_table), from the forward's outputs.
std::vector<at::Tensor> gathered_cosine_backward(const at::Tensor& grad, const at::Tensor& u,
                                 const at::Tensor& table, const at::Tensor& starts,
                                 const at::Tensor& order, const at::Tensor& grouped,
                                 const at::Tensor& row_norms, double eps, bool want_u,
                                 bool want_table) {
  const int64_t B = u.size(0), n = table.size(0), d = u.size(1);
  TORCH_CHECK(u.is_contiguous() && table.is_contiguous() && u.scalar_type() == table.scalar_type() &&
                  starts.numel() == n + 1 && row_norms.numel() == n &&
                  order.numel() == grad.numel() && grouped.numel() == grad.numel() &&
                  grad.dim() == 2 && grad.size(0) == B,
              "gathered_cosine kernel: backward inputs do not match the forward's");
  auto g = grad.to(u.scalar_type()).contiguous();
  auto grad_u = want_u ? at::empty_like(u) : at::empty({0}, u.options());
  auto grad_table = want_table ? at::empty_like(table) : at::empty({0}, table.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "gathered_cosine_backward", [&] {
    backward_impl<scalar_t>(g.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(),
                            table.data_ptr<scalar_t>(), starts.data_ptr<int64_t>(),
                            order.data_ptr<int64_t>(), grouped.data_ptr<scalar_t>(), row_norms.data_ptr<scalar_t>(),
                            want_u ? grad_u.data_ptr<scalar_t>() : nullptr,
                            want_table ? grad_table.data_ptr<scalar_t>() : nullptr, n, B, d,
                            static_cast<scalar_t>(eps));
  });
  return {grad_u, grad_table};
}
