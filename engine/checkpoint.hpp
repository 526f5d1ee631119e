// Tensors in and out of checkpoint files (engine/tensor_file.hpp holds the file format).
#pragma once

#include "engine/tensor.hpp"
#include "engine/tensor_file.hpp"

#include <string>

namespace sigmar {

// A host copy of `t` under `name`.
NamedBuffer to_buffer(const std::string& name, const Tensor& t);
// Copies entry `name` of `file` into `dst` (on any device); throws naming the file and the
// entry when it is missing or its dtype or shape differ from dst's.
void load_into(const TensorFile& file, const std::string& name, Tensor& dst);

}  // namespace sigmar
