// The tensor: a shape, a contiguous buffer on one device, and (for autograd) a gradient and
// the node that produced it. Tensors are handles: copying one shares the storage.
//
// Two dtypes exist: float32 for every value the network computes, int32 for labels and
// indices. Layout is always row-major contiguous (NCHW for images, SPEC 1).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace sigmar {

enum class Device { cpu, cuda };
enum class DType { f32, i32, u8 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);

const char* device_name(Device d);

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);

// A raw buffer owned by a device allocator (malloc on the CPU, the caching allocator on CUDA).
struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  Device device = Device::cpu;
  // Bumped by every mutable access (Tensor::raw() and the typed data() calls that use it), so
  // a cache derived from the contents (a reordered copy) can tell whether it is still valid.
  uint64_t version = 0;
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

struct Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;

  // Construction. `empty` leaves the contents undefined; `zeros` fills with 0.
  static Tensor empty(const Shape& shape, Device device = Device::cpu, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, Device device = Device::cpu, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu);
  static Tensor from(const std::vector<float>& values, const Shape& shape,
                     Device device = Device::cpu);
  static Tensor from_i32(const std::vector<int32_t>& values, const Shape& shape,
                         Device device = Device::cpu);
  static Tensor from_u8(const std::vector<uint8_t>& values, const Shape& shape,
                        Device device = Device::cpu);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t ndim() const;
  int64_t numel() const;
  Device device() const;
  DType dtype() const;

  float* data();
  const float* data() const;
  int32_t* data_i32();
  const int32_t* data_i32() const;
  uint8_t* data_u8();
  const uint8_t* data_u8() const;
  void* raw();
  const void* raw() const;
  size_t nbytes() const;

  // Host copies, for tests and I/O.
  std::vector<float> to_vector() const;
  std::vector<int32_t> to_vector_i32() const;
  Tensor to(Device device) const;  // a copy on `device` (shares storage when already there)
  Tensor clone() const;            // a deep copy, detached from the graph
  void copy_from(const Tensor& src);  // same numel and dtype; any devices
  void fill(float value);

  // A view with another shape over the same storage (numel must match). Not recorded in the
  // graph: use ops::reshape for a differentiable reshape.
  Tensor view(const Shape& shape) const;
  // A view of `shape` starting `offset` elements into this tensor's storage.
  Tensor view_at(int64_t offset, const Shape& shape) const;
  // Makes this tensor (every handle to it) live in `target`'s storage, a view of the same
  // shape: its values are copied there first. Used to pack parameters into one flat buffer.
  void move_into(const Tensor& target);

  // Autograd.
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on);
  Tensor grad() const;       // undefined until a backward pass reaches this tensor
  void zero_grad();          // explicit zeroing (SPEC 1): fills an existing grad with 0
  void accumulate_grad(const Tensor& g);  // grad += g (a first gradient is copied in)
  void set_grad(const Tensor& g);         // install a gradient buffer (e.g. a flat view)
  const std::shared_ptr<Node>& grad_fn() const;
  void set_grad_fn(std::shared_ptr<Node> node);
  // Runs reverse-mode autograd from this scalar (seed 1) or with an explicit seed.
  void backward() const;
  void backward(const Tensor& seed) const;

  const TensorImpl* impl() const { return impl_.get(); }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  Shape shape;
  DType dtype = DType::f32;
  std::shared_ptr<Storage> storage;
  size_t offset_bytes = 0;
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
};

// A recorded operation. `backward` receives the gradient of the op's output and returns one
// gradient per input (an undefined Tensor where an input needs none); the engine adds them
// into the inputs' gradients, so no op can overwrite a gradient another op has written.
struct Node {
  std::string name;
  std::vector<Tensor> inputs;
  std::function<std::vector<Tensor>(const Tensor& grad_out)> backward;
};

// While a NoGradGuard lives, ops record nothing (evaluation, optimizer steps).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};
bool grad_enabled();

}  // namespace sigmar
