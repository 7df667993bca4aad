#include "core/tensor.h"

#include <malloc.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "core/autograd.h"
#include "core/random.h"
#include "core/threading.h"

namespace qforge {

int64_t shape_numel(const Shape& shape) {
  int64_t count = 1;
  for (int64_t extent : shape) count *= extent;
  return count;
}

std::string shape_to_string(const Shape& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) text += ",";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

namespace {
// Note [Allocator]: glibc serves large blocks with mmap and returns them with munmap, so
// every training step would fault in fresh zeroed pages for every activation and
// gradient (measured: 15% of a QAT step in the kernel's page-fault path). Raising the
// mmap and trim thresholds once keeps freed blocks in the heap for reuse.
void tune_allocator_once() {
  static const bool tuned = [] {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    return true;
  }();
  (void)tuned;
}

// QFORGE_THREADS, applied as the program starts (core/threading.h): every program that makes
// a tensor links this file, so none can open a parallel region before the variable is read.
[[maybe_unused]] const bool threads_read_at_start = (read_threads_at_start(), true);
}  // namespace

Storage::Storage(std::size_t size_bytes) : size_bytes_(size_bytes) {
  tune_allocator_once();
  // 64-byte alignment for AVX loads and oneDNN; aligned_alloc wants a multiple.
  std::size_t rounded = std::max<std::size_t>(64, (size_bytes + 63) / 64 * 64);
  bytes_.reset(static_cast<std::byte*>(std::aligned_alloc(64, rounded)));
  QF_CHECK(bytes_ != nullptr, "tensor: out of memory allocating ", size_bytes, " bytes");
}

void Storage::FreeDeleter::operator()(std::byte* pointer) const { std::free(pointer); }

// ---- factories ------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  for (int64_t extent : shape)
    QF_CHECK(extent >= 0, "tensor: negative extent in shape ", shape_to_string(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype));
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor tensor = empty(shape, dtype);
  std::memset(tensor.raw_data(), 0, tensor.numel() * dtype_size(dtype));
  return tensor;
}

Tensor Tensor::ones(const Shape& shape) { return full(shape, 1.0f); }

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor tensor = empty(shape);
  std::fill_n(tensor.data(), tensor.numel(), value);
  return tensor;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  return from_data<float>(shape, values);
}

Tensor Tensor::randn(const Shape& shape, Generator& generator, float mean, float stddev) {
  Tensor tensor = empty(shape);
  float* out = tensor.data();
  for (int64_t i = 0; i < tensor.numel(); ++i) out[i] = mean + stddev * generator.normal();
  return tensor;
}

Tensor Tensor::uniform(const Shape& shape, Generator& generator, float low, float high) {
  Tensor tensor = empty(shape);
  float* out = tensor.data();
  for (int64_t i = 0; i < tensor.numel(); ++i) out[i] = generator.uniform(low, high);
  return tensor;
}

Tensor Tensor::kaiming_uniform(const Shape& shape, int64_t fan_in, Generator& generator) {
  QF_CHECK(fan_in > 0, "kaiming_uniform: fan_in must be positive, got ", fan_in);
  float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
  return uniform(shape, generator, -bound, bound);
}

// ---- metadata ---------------------------------------------------------------

void Tensor::check_defined(const char* what) const {
  QF_CHECK(impl_ != nullptr, "tensor: ", what, " of an undefined tensor");
}

const Shape& Tensor::shape() const {
  check_defined("shape");
  return impl_->shape;
}

int64_t Tensor::size(int64_t axis) const {
  int64_t rank = dim();
  QF_CHECK(axis >= -rank && axis < rank, "tensor: axis ", axis, " out of range for shape ",
           shape_to_string(shape()));
  return shape()[axis < 0 ? axis + rank : axis];
}

int64_t Tensor::numel() const { return shape_numel(shape()); }

DType Tensor::dtype() const {
  check_defined("dtype");
  return impl_->dtype;
}

std::byte* Tensor::raw_data() const {
  return impl_->storage->data() + impl_->offset * dtype_size(impl_->dtype);
}

std::vector<float> Tensor::to_vector() const {
  const float* begin = data();
  return std::vector<float>(begin, begin + numel());
}

float Tensor::item() const {
  QF_CHECK(numel() == 1, "item: expected a one-element tensor, got shape ", shape_to_string(shape()));
  return data()[0];
}

bool Tensor::shares_storage(const Tensor& other) const {
  return defined() && other.defined() && impl_->storage == other.impl_->storage;
}

// ---- autograd metadata ------------------------------------------------------

bool Tensor::requires_grad() const { return defined() && impl_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  check_defined("set_requires_grad");
  QF_CHECK(is_leaf(),
           "set_requires_grad: only leaf tensors can change requires_grad; "
           "use detach() on a tensor produced by an op");
  QF_CHECK(!requires_grad || dtype() == DType::f32,
           "set_requires_grad: only f32 tensors can require grad, got ", dtype_name(dtype()));
  impl_->requires_grad = requires_grad;
  return *this;
}

Tensor Tensor::grad() const {
  check_defined("grad");
  return impl_->grad;
}

void Tensor::set_grad(const Tensor& grad) {
  check_defined("set_grad");
  QF_CHECK(!grad.defined() || grad.shape() == shape(), "set_grad: gradient shape ",
           shape_to_string(grad.shape()), " does not match tensor shape ", shape_to_string(shape()));
  impl_->grad = grad;
}

void Tensor::zero_grad() {
  check_defined("zero_grad");
  impl_->grad = Tensor();
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return defined() ? impl_->grad_fn : none;
}

void Tensor::backward(bool retain_graph) const { run_backward(*this, Tensor(), retain_graph); }

void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  run_backward(*this, grad_output, retain_graph);
}

// ---- copies and views -------------------------------------------------------

Tensor Tensor::detach() const {
  check_defined("detach");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = impl_->shape;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::clone() const {
  Tensor copy = empty(shape(), dtype());
  std::memcpy(copy.raw_data(), raw_data(), numel() * dtype_size(dtype()));
  return copy;
}

Tensor Tensor::view(const Shape& new_shape) const {
  Shape resolved = new_shape;
  int64_t known = 1;
  int inferred_axis = -1;
  for (std::size_t i = 0; i < resolved.size(); ++i) {
    if (resolved[i] == -1) {
      QF_CHECK(inferred_axis < 0, "view: more than one -1 in ", shape_to_string(new_shape));
      inferred_axis = static_cast<int>(i);
    } else {
      QF_CHECK(resolved[i] >= 0, "view: negative extent in ", shape_to_string(new_shape));
      known *= resolved[i];
    }
  }
  if (inferred_axis >= 0) {
    QF_CHECK(known > 0 && numel() % known == 0, "view: cannot reshape ", shape_to_string(shape()), " into ",
             shape_to_string(new_shape));
    resolved[inferred_axis] = numel() / known;
  }
  QF_CHECK(shape_numel(resolved) == numel(), "view: cannot reshape ", shape_to_string(shape()), " (", numel(),
           " elements) into ", shape_to_string(new_shape));
  Tensor result = detach();
  result.impl_->shape = resolved;
  return result;
}

void Tensor::copy_from(const Tensor& source) {
  QF_CHECK(source.shape() == shape() && source.dtype() == dtype(), "copy_from: source ",
           shape_to_string(source.shape()), " ", dtype_name(source.dtype()), " into ",
           shape_to_string(shape()), " ", dtype_name(dtype()));
  std::memmove(raw_data(), source.raw_data(), numel() * dtype_size(dtype()));
}

// ---- printing ---------------------------------------------------------------

std::string Tensor::to_string(int64_t max_elements) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream out;
  out << "Tensor(shape=" << shape_to_string(shape()) << ", dtype=" << dtype_name(dtype());
  if (requires_grad()) out << ", requires_grad";
  out << ",\n  [";
  int64_t count = std::min(numel(), max_elements);
  int64_t row = dim() > 0 ? std::max<int64_t>(1, shape().back()) : 1;
  out << std::setprecision(6);
  for (int64_t i = 0; i < count; ++i) {
    if (i) out << ((i % row == 0) ? ",\n   " : ", ");
    switch (dtype()) {
      case DType::f32:
        out << data_as<float>()[i];
        break;
      case DType::s8:
        out << static_cast<int>(data_as<int8_t>()[i]);
        break;
      case DType::u8:
        out << static_cast<int>(data_as<uint8_t>()[i]);
        break;
      case DType::s32:
        out << data_as<int32_t>()[i];
        break;
    }
  }
  if (count < numel()) out << ", ... (" << numel() - count << " more)";
  out << "])";
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Tensor& tensor) { return out << tensor.to_string(); }

}  // namespace qforge
