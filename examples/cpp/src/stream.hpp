// Streaming bundles (nnaudio-export build --streaming) run chunk by chunk from C++.
#pragma once
#include <torch/script.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace stream {

// Runs a streaming bundle's model over x (1, L) / (1, C, L): pieces of `piece` samples are
// buffered into chunks of `n` samples; each chunk is one call (audio_chunk, chunk_length,
// end, state) -> (frames, num_frames, next_state) with the state carried, the rest one call
// with end = 1. Returns the frames of item 0 concatenated along `frame_axis` (no batch axis).
template <typename Call>
torch::Tensor run(const torch::Tensor& x, int64_t n, int64_t state_size, int64_t frame_axis, int64_t piece,
                  Call call) {
  const int64_t total = x.size(-1);
  torch::Tensor state = torch::zeros({1, state_size}, torch::kFloat32);
  std::vector<torch::Tensor> parts;
  auto step = [&](const torch::Tensor& chunk, int64_t length, float end) {
    std::vector<torch::Tensor> out = call({chunk, torch::full({1, 1}, static_cast<float>(length)),
                                           torch::full({1, 1}, end), state});
    if (out.size() != 3) throw std::runtime_error("a streaming model returns 3 tensors");
    const int64_t count = out[1].item<int64_t>();
    parts.push_back(out[0].narrow(frame_axis, 0, count).clone());
    state = out[2].clone();
  };
  int64_t done = 0;
  for (int64_t arrived = std::min(piece, total);; arrived = std::min(arrived + piece, total)) {
    while (done + n <= arrived) {
      // A fresh row-major copy: a narrowed (1, n) view keeps the clip's row stride, which
      // counts as contiguous but fails AOTInductor's exact stride check on its inputs.
      step(x.narrow(-1, done, n).clone(at::MemoryFormat::Contiguous), n, 0.0f);
      done += n;
    }
    if (arrived == total) break;
  }
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = n;
  torch::Tensor last = torch::zeros(shape, x.options());
  last.narrow(-1, 0, total - done).copy_(x.narrow(-1, done, total - done));
  step(last, total - done, 1.0f);
  return torch::cat(parts, frame_axis)[0].contiguous();
}

inline std::vector<torch::Tensor> tensors_of(const c10::IValue& v) {
  std::vector<torch::Tensor> out;
  if (v.isTuple())
    for (const auto& e : v.toTupleRef().elements()) out.push_back(e.toTensor());
  return out;
}

}  // namespace stream
