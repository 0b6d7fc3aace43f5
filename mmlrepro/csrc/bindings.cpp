// The Python module of the compiled kernels (mmlrepro.kernels): one module, built once per
// machine, whose functions are defined in gathered_cosine.cpp and margin_penalty.cpp.

#include <torch/extension.h>

#include <vector>

std::vector<at::Tensor> gathered_cosine_forward(const at::Tensor& u, const at::Tensor& table,
                                                const at::Tensor& idx, double eps);
std::vector<at::Tensor> gathered_cosine_backward(const at::Tensor& grad, const at::Tensor& u,
                                                 const at::Tensor& table, const at::Tensor& starts,
                                                 const at::Tensor& order, const at::Tensor& grouped,
                                                 const at::Tensor& row_norms, double eps, bool want_u,
                                                 bool want_table);
at::Tensor margin_penalty_forward(const at::Tensor& s, std::vector<double> margins,
                                  std::vector<double> weights);
at::Tensor margin_penalty_backward(const at::Tensor& grad, const at::Tensor& s,
                                   std::vector<double> margins, std::vector<double> weights);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gathered_cosine_forward", &gathered_cosine_forward,
        "gathered cosine scores, and the pairs grouped by row");
  m.def("gathered_cosine_backward", &gathered_cosine_backward,
        "gathered cosine gradients: (grad_u, dense grad_table)");
  m.def("margin_penalty_forward", &margin_penalty_forward,
        "MML's per-negative penalty sum_k w_k relu(s - m_k), elementwise");
  m.def("margin_penalty_backward", &margin_penalty_backward,
        "its gradient, the K terms added as autograd adds them");
}
