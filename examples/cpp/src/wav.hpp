// WAV reader: RIFF/WAVE, 16-bit PCM (format 1) or 32-bit IEEE float (format 3), also as
// WAVE_FORMAT_EXTENSIBLE. Samples stay interleaved; no resampling, no conversion here.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace wav {

struct Audio {
  int sample_rate = 0;
  int channels = 0;
  bool is_float = false;          // true: float32 samples; false: int16 samples
  std::vector<int16_t> pcm16;     // interleaved, when !is_float
  std::vector<float> f32;         // interleaved, when is_float
  size_t frames() const {
    return channels ? (is_float ? f32.size() : pcm16.size()) / static_cast<size_t>(channels) : 0;
  }
};

inline uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
inline uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }

inline Audio read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<uint8_t> d((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string where = path + ": ";
  if (d.size() < 12 || std::memcmp(d.data(), "RIFF", 4) != 0 || std::memcmp(d.data() + 8, "WAVE", 4) != 0)
    throw std::runtime_error(where + "not a RIFF/WAVE file");
  Audio a;
  int format = -1, bits = 0, block_align = 0;
  const uint8_t* data = nullptr;
  size_t data_size = 0;
  size_t pos = 12;
  while (pos + 8 <= d.size()) {
    const uint8_t* ck = d.data() + pos;
    size_t size = le32(ck + 4);
    size_t body = pos + 8;
    size_t avail = d.size() - body;
    if (std::memcmp(ck, "fmt ", 4) == 0) {
      if (size < 16 || size > avail) throw std::runtime_error(where + "truncated fmt chunk");
      const uint8_t* f = d.data() + body;
      format = le16(f);
      a.channels = le16(f + 2);
      a.sample_rate = static_cast<int>(le32(f + 4));
      block_align = le16(f + 12);
      bits = le16(f + 14);
      if (format == 0xFFFE) {  // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the tag
        if (size < 40) throw std::runtime_error(where + "truncated WAVE_FORMAT_EXTENSIBLE fmt chunk");
        format = le16(f + 24);
      }
    } else if (std::memcmp(ck, "data", 4) == 0) {
      data = d.data() + body;
      data_size = size > avail ? avail : size;  // streaming writers leave 0xFFFFFFFF / 0
      if (size == 0 || size == 0xFFFFFFFFu) data_size = avail;
    }
    if (size > avail) break;
    pos = body + size + (size & 1);  // chunks are word aligned
  }
  if (format < 0) throw std::runtime_error(where + "no fmt chunk");
  if (!data) throw std::runtime_error(where + "no data chunk");
  if (a.channels < 1) throw std::runtime_error(where + "invalid channel count 0");
  if (format == 1 && bits == 16) a.is_float = false;
  else if (format == 3 && bits == 32) a.is_float = true;
  else
    throw std::runtime_error(where + "unsupported WAV encoding (format tag " + std::to_string(format) + ", " +
                             std::to_string(bits) + " bits); expected 16-bit PCM or 32-bit float");
  const int width = bits / 8;
  if (block_align != width * a.channels)
    throw std::runtime_error(where + "inconsistent block align " + std::to_string(block_align));
  const size_t n = data_size / static_cast<size_t>(width) / a.channels * a.channels;
  if (a.is_float) {
    a.f32.resize(n);
    std::memcpy(a.f32.data(), data, n * 4);  // little-endian host assumed (x86-64, aarch64)
  } else {
    a.pcm16.resize(n);
    std::memcpy(a.pcm16.data(), data, n * 2);
  }
  return a;
}

}  // namespace wav
