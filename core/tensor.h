// Tensor: a handle to contiguous row-major data plus optional autograd metadata.
//
// Three layers, as in PyTorch's c10 (Note [Tensor layers]):
//   Storage    — shared, 64-byte-aligned bytes;
//   TensorImpl — the view of them (shape, dtype, element offset) and the autograd
//                metadata (requires_grad, grad, the Node that produced it);
//   Tensor     — a shared handle to a TensorImpl.
//
// Copying a Tensor is shallow: both handles name the same TensorImpl, so
//     Tensor a = Tensor::zeros({2, 3});
//     Tensor b = a;          // same data, same grad, same requires_grad
//     b.data()[0] = 1;       // a.data()[0] == 1 too
//     Tensor c = a.clone();  // new storage, no graph
//     Tensor d = a.detach(); // same storage, no graph, requires_grad false
// Every tensor is contiguous; views (reshape, detach, slicing the first axis) share
// storage, everything else copies. There are no strides, by design: kernels see
// plain (pointer, sizes) and stay simple.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace qforge {

// A shape is a vector of extents; its own type so that messages can stream it
// ("got [3,28,28]") through argument-dependent lookup.
struct Shape : std::vector<int64_t> {
  using std::vector<int64_t>::vector;
  Shape(const std::vector<int64_t>& extents) : std::vector<int64_t>(extents) {}
};

int64_t shape_numel(const Shape& shape);
std::string shape_to_string(const Shape& shape);  // "[2,3,4]"

class Storage {
 public:
  explicit Storage(std::size_t size_bytes);
  std::byte* data() { return bytes_.get(); }
  const std::byte* data() const { return bytes_.get(); }
  std::size_t size_bytes() const { return size_bytes_; }

 private:
  struct FreeDeleter {
    void operator()(std::byte* pointer) const;
  };
  std::unique_ptr<std::byte, FreeDeleter> bytes_;
  std::size_t size_bytes_;
};

struct Node;  // core/autograd.h
class Generator;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor; defined() is false
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Factories. Every random factory takes the generator explicitly.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor ones(const Shape& shape);
  static Tensor full(const Shape& shape, float value);
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
  template <typename T>
  static Tensor from_data(const Shape& shape, std::span<const T> values);
  static Tensor scalar(float value) { return full({}, value); }
  static Tensor randn(const Shape& shape, Generator& generator, float mean = 0, float stddev = 1);
  static Tensor uniform(const Shape& shape, Generator& generator, float low, float high);
  // He/Kaiming uniform as nn.init.kaiming_uniform_(a=sqrt(5)) — PyTorch's default
  // for Linear and Conv2d weights: bound = 1/sqrt(fan_in).
  static Tensor kaiming_uniform(const Shape& shape, int64_t fan_in, Generator& generator);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t axis) const;  // negative axes count from the end
  int64_t numel() const;
  DType dtype() const;

  // Typed data access; checks the dtype.
  float* data() { return data_as<float>(); }
  const float* data() const { return data_as<float>(); }
  template <typename T>
  T* data_as();
  template <typename T>
  const T* data_as() const;
  // Untyped bytes (numel·dtype_size of them), for serialization and the int8 runtime.
  std::byte* bytes() const { return raw_data(); }
  std::size_t size_bytes() const { return numel() * dtype_size(dtype()); }
  std::vector<float> to_vector() const;  // f32 only
  float item() const;                    // the value of a one-element f32 tensor

  // Autograd.
  bool requires_grad() const;
  Tensor& set_requires_grad(bool requires_grad);  // only on leaves
  Tensor grad() const;                            // undefined until a backward reaches it
  void set_grad(const Tensor& grad);
  void zero_grad();  // drops the gradient
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const { return grad_fn() == nullptr; }
  // Backward from a one-element tensor (gradient 1) ...
  void backward(bool retain_graph = false) const;
  // ... or from any tensor with an explicit gradient of its shape.
  void backward(const Tensor& grad_output, bool retain_graph = false) const;

  Tensor detach() const;                  // same storage, no graph
  Tensor clone() const;                   // new storage, no graph
  Tensor view(const Shape& shape) const;  // same storage, no graph; -1 infers one axis
  void copy_from(const Tensor& source);   // element copy, same shape and dtype

  bool shares_storage(const Tensor& other) const;
  std::string to_string(int64_t max_elements = 64) const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  void check_defined(const char* what) const;
  std::byte* raw_data() const;
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  DType dtype = DType::f32;
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
};

std::ostream& operator<<(std::ostream& out, const Tensor& tensor);

// Shapes in messages: "expected 4-D input (N,C,H,W), got [3,28,28]".
inline std::ostream& operator<<(std::ostream& out, const Shape& shape) {
  return out << shape_to_string(shape);
}

template <typename T>
T* Tensor::data_as() {
  QF_CHECK(defined() && dtype() == dtype_of<T>(), "tensor: data access as ", dtype_name(dtype_of<T>()),
           " on a tensor of dtype ", defined() ? dtype_name(dtype()) : "undefined");
  return reinterpret_cast<T*>(raw_data());
}

template <typename T>
const T* Tensor::data_as() const {
  return const_cast<Tensor*>(this)->data_as<T>();
}

template <typename T>
Tensor Tensor::from_data(const Shape& shape, std::span<const T> values) {
  Tensor tensor = empty(shape, dtype_of<T>());
  QF_CHECK(static_cast<int64_t>(values.size()) == tensor.numel(), "tensor: ", values.size(),
           " values for shape ", shape_to_string(shape), " (", tensor.numel(), " elements)");
  std::copy(values.begin(), values.end(), tensor.data_as<T>());
  return tensor;
}

}  // namespace qforge
