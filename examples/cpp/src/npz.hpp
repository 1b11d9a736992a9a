// Read an uncompressed .npz (a zip of .npy files, as nnaudio_export writes golden.npz) from
// memory: stored entries only (compression method 0), little-endian float64 / float32 /
// int16 arrays in C order. Anything else is refused with a message naming it.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace npz {

struct Array {
  std::string descr;            // '<f8', '<f4' or '<i2'
  std::vector<int64_t> shape;   // () for a scalar
  std::string data;             // raw little-endian bytes, C order

  int64_t count() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  // Element i as a double, whatever the dtype.
  double at(int64_t i) const {
    if (descr == "<f8") { double v; std::memcpy(&v, data.data() + 8 * i, 8); return v; }
    if (descr == "<f4") { float v; std::memcpy(&v, data.data() + 4 * i, 4); return v; }
    int16_t v;
    std::memcpy(&v, data.data() + 2 * i, 2);
    return v;
  }
};

inline uint64_t le(const std::string& b, size_t pos, int bytes) {
  if (pos + bytes > b.size()) throw std::runtime_error("npz: truncated file");
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[pos + i]);
  return v;
}

// The value text after 'key': in a .npy header dict.
inline std::string header_value(const std::string& header, const std::string& key) {
  size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) throw std::runtime_error("npy header lacks '" + key + "'");
  size_t colon = header.find(':', k);
  size_t start = header.find_first_not_of(' ', colon + 1);
  char open = header[start];
  char close = open == '\'' ? '\'' : (open == '(' ? ')' : ',');
  size_t end = header.find(close, start + 1);
  if (start == std::string::npos || end == std::string::npos) throw std::runtime_error("bad npy header");
  return open == '\'' || open == '(' ? header.substr(start + 1, end - start - 1) : header.substr(start, end - start);
}

inline Array parse_npy(const std::string& b, const std::string& name) {
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) throw std::runtime_error(name + ": not a .npy file");
  const int major = static_cast<unsigned char>(b[6]);
  const size_t hlen_bytes = major == 1 ? 2 : 4;
  const size_t hlen = le(b, 8, static_cast<int>(hlen_bytes));
  const size_t start = 8 + hlen_bytes;
  if (start + hlen > b.size()) throw std::runtime_error(name + ": truncated .npy header");
  const std::string header = b.substr(start, hlen);
  Array a;
  a.descr = header_value(header, "descr");
  if (a.descr != "<f8" && a.descr != "<f4" && a.descr != "<i2")
    throw std::runtime_error(name + ": dtype " + a.descr + " is not <f8, <f4 or <i2");
  if (header_value(header, "fortran_order").find("False") == std::string::npos)
    throw std::runtime_error(name + ": Fortran order is not supported");
  const std::string dims = header_value(header, "shape");
  size_t pos = 0;
  while (pos < dims.size()) {
    size_t next = dims.find(',', pos);
    std::string item = dims.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (item.find_first_not_of(' ') != std::string::npos) a.shape.push_back(std::stoll(item));
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  const size_t item = a.descr == "<f8" ? 8 : (a.descr == "<f4" ? 4 : 2);
  const size_t bytes = static_cast<size_t>(a.count()) * item;
  if (start + hlen + bytes != b.size()) throw std::runtime_error(name + ": data size does not match its shape");
  a.data = b.substr(start + hlen, bytes);
  return a;
}

// Every array of the archive, by name without '.npy'.
inline std::map<std::string, Array> read(const std::string& zip) {
  std::map<std::string, Array> out;
  size_t pos = 0;
  while (pos + 4 <= zip.size() && le(zip, pos, 4) == 0x04034b50) {
    const uint64_t flags = le(zip, pos + 6, 2), method = le(zip, pos + 8, 2);
    uint64_t size = le(zip, pos + 18, 4);
    const size_t name_len = le(zip, pos + 26, 2), extra_len = le(zip, pos + 28, 2);
    const std::string name = zip.substr(pos + 30, name_len);
    if (method != 0) throw std::runtime_error("npz: " + name + " is compressed; expected a stored (np.savez) archive");
    if (flags & 8) throw std::runtime_error("npz: " + name + " has a data descriptor; expected sizes in the header");
    if (size == 0xFFFFFFFFu) {  // zip64: the sizes are in the extra field (id 1)
      size_t e = pos + 30 + name_len, end = e + extra_len;
      bool found = false;
      while (e + 4 <= end) {
        const uint64_t id = le(zip, e, 2), len = le(zip, e + 2, 2);
        if (id == 1 && len >= 16) { size = le(zip, e + 12, 8); found = true; break; }
        e += 4 + len;
      }
      if (!found) throw std::runtime_error("npz: " + name + ": zip64 entry without sizes");
    }
    const size_t data = pos + 30 + name_len + extra_len;
    if (data + size > zip.size()) throw std::runtime_error("npz: " + name + " is truncated");
    std::string key = name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0 ? name.substr(0, name.size() - 4) : name;
    out[key] = parse_npy(zip.substr(data, size), name);
    pos = data + size;
  }
  if (out.empty()) throw std::runtime_error("npz: no arrays (not a zip archive?)");
  return out;
}

}  // namespace npz
