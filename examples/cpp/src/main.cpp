// frontend_cli BUNDLE_DIR input.wav out.npy [--backend torchscript|pt2] [--expect-sha256 HEX]
//              [--threads N] [--no-verify] [--stream MS]
// frontend_cli BUNDLE_DIR --check [--backend torchscript|pt2] [--expect-sha256 HEX] [--threads N]
//
// --check re-checks the bundle on this machine without Python: it runs the model on every
// input of the bundle's golden.npz (sha256 checked against manifest.json) and compares with
// the float64 reference outputs stored there, with the thresholds stored there (relative to
// the peak, or absolute within a dB window of each item's peak for log outputs). It runs
// synthesis bundles too (input 'spectrum' -> output 'audio': golden.npz holds the spectra).
//
// --stream MS runs a streaming bundle (nnaudio-export build --streaming): the WAV (any length)
// is fed in pieces of MS milliseconds, buffered to the bundle's chunks, each chunk run with
// the carried state, the rest flushed with end=1; the frames are concatenated into the same
// .npy as the offline bundle writes for the clip.
//
// Runs an nnaudio_export bundle on one WAV file from C++ (libtorch): reads manifest.json (and,
// with --expect-sha256, refuses it unless its sha256 is the pinned one: a bundle is code, a
// .pt2 is a shared library), checks the model file's sha256 and loads the very bytes it
// hashed (no links followed), reads a 16-bit PCM or 32-bit float WAV, checks its sample
// rate, channel count and length against the manifest (pads / trims only when the manifest's
// length_policy is 'pad_or_trim'), runs model.pt (torch::jit) or model.pt2 (AOTInductor) with
// batch 1 and writes the features, without the batch axis, as a float32 .npy.
//
// Sample conversion: a float32 bundle gets int16 WAV samples as s / 32768; an int16 bundle
// gets float WAV samples as round(clamp(s * 32768, -32768, 32767)).
// Exit status: 0 ok, 2 usage / bundle / input errors, 1 inference failed, 3 --check failed.
#include <ATen/Parallel.h>
#include <torch/script.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "json.hpp"
#include "npy.hpp"
#include "npz.hpp"
#include "sha256.hpp"
#include "stream.hpp"
#include "wav.hpp"

namespace {

struct InputError : std::runtime_error {  // exit 2
  using std::runtime_error::runtime_error;
};

const char* kUsage =
    "usage: frontend_cli BUNDLE_DIR input.wav out.npy [--backend torchscript|pt2] [--expect-sha256 HEX]\n"
    "                    [--threads N] [--no-verify]\n"
    "       frontend_cli BUNDLE_DIR --check [--backend torchscript|pt2] [--expect-sha256 HEX] [--threads N]\n"
    "  --check          run golden.npz's inputs and compare with its float64 outputs (exit 3 if they differ)\n"
    "  --backend        torchscript (model.pt, default) or pt2 (model.pt2, AOTInductor)\n"
    "  --expect-sha256  refuse the bundle unless manifest.json has this sha256 (nnaudio-export inspect)\n"
    "  --threads        intra-op threads (default: libtorch's); equal counts give equal rounding\n"
    "  --no-verify      skip the sha256 check of the model file against manifest.json\n"
    "  --stream MS      a streaming bundle: feed the WAV in MS-millisecond pieces, chunk by chunk\n";

struct Manifest {
  std::string name;
  double sample_rate = 0;
  int64_t num_samples = 0;
  std::string length_policy = "exact";
  std::string input_dtype;
  int64_t channels = 1;
  int64_t batch = 0;                 // 0: dynamic batch axis
  std::vector<int64_t> output_dims;  // without the batch axis
  mini_json::Value files;
  mini_json::Value golden;           // the golden.npz entry (null when the bundle has none)
  int64_t chunk_samples = 0;         // > 0: a streaming bundle
  int64_t state_size = 0;
  int64_t frame_axis = 0;            // batch axis included
  bool synthesis = false;            // input 'spectrum' -> output 'audio' (only --check runs it)
  std::vector<int64_t> input_dims;   // a synthesis bundle's input shape without the batch axis
};

// A bundle file: a regular file, never a link (a bundle's files must be inside it).
std::string read_text(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
    throw InputError(path + ": is a symbolic link; a bundle's files must be regular files inside it");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int64_t as_int(const mini_json::Value& v, const std::string& what) {
  double x = v.num();
  if (x != std::floor(x)) throw InputError("manifest.json: " + what + " is not an integer");
  return static_cast<int64_t>(x);
}

std::string hex_sha256(const std::string& bytes) {
  sha256::Hasher h;
  h.update(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return h.hexdigest();
}

Manifest read_manifest(const std::string& dir, const std::string& expected_sha256, bool for_check = false) {
  const std::string path = dir + "/manifest.json";
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) throw InputError(dir + " is not a bundle: manifest.json is missing");
  const std::string text = read_text(path);
  if (!expected_sha256.empty()) {
    std::string want = expected_sha256;
    std::transform(want.begin(), want.end(), want.begin(), [](unsigned char c) { return std::tolower(c); });
    const std::string got = hex_sha256(text);
    if (got != want)
      throw InputError(path + ": sha256 is " + got + ", not the pinned " + want + "; this is not the bundle you trusted");
  }
  mini_json::Value root;
  try {
    root = mini_json::parse(text);
    const mini_json::Value* fmt = root.find("format");
    if (!fmt || !fmt->is_string() || fmt->string != "nnaudio_export.bundle")
      throw InputError(path + ": not an nnaudio_export bundle manifest");
    Manifest m;
    m.name = root.at("name").str();
    m.sample_rate = root.at("sample_rate").num();
    m.num_samples = as_int(root.at("num_samples"), "num_samples");
    if (const mini_json::Value* lp = root.find("length_policy"); lp && lp->is_string()) m.length_policy = lp->string;
    if (m.length_policy != "exact" && m.length_policy != "pad_or_trim")
      throw InputError(path + ": unknown length_policy '" + m.length_policy + "'");
    const mini_json::Value& in = root.at("input");
    if (const mini_json::Value* st = root.find("streaming"); st && st->is_object()) {
      m.chunk_samples = as_int(st->at("chunk_samples"), "streaming.chunk_samples");
      m.state_size = as_int(st->at("state").at("size"), "streaming.state.size");
      m.frame_axis = as_int(st->at("frame_axis"), "streaming.frame_axis");
      m.input_dtype = in.at("dtype").str();
      const mini_json::Value& sh = in.at("shape");
      if (sh.is_array() && sh.items.size() == 3) m.channels = as_int(sh.items[1], "input.shape[1]");
      m.files = root.at("files");
      return m;
    }
    // A synthesis bundle takes a spectrum ("spectrum" -> "audio"), not a WAV file: only
    // --check (golden.npz's spectra in, its audio out) runs it.
    if (const mini_json::Value* nm = in.find("name"); nm && nm->is_string() && nm->string != "audio") {
      if (!for_check)
        throw InputError(path + ": this bundle's input is '" + nm->string + "', not audio (a synthesis "
                         "bundle); frontend_cli runs bundles whose input is audio (and --check any bundle)");
      m.synthesis = true;
      m.input_dtype = in.at("dtype").str();
      if (m.input_dtype != "float32") throw InputError(path + ": unsupported spectrum dtype '" + m.input_dtype + "'");
      const mini_json::Value& ishape = in.at("shape");
      if (!ishape.is_array() || ishape.items.size() < 2) throw InputError(path + ": bad input.shape");
      if (ishape.items[0].is_number()) m.batch = as_int(ishape.items[0], "input.shape[0]");
      for (size_t i = 1; i < ishape.items.size(); ++i) m.input_dims.push_back(as_int(ishape.items[i], "input.shape"));
    } else {
      m.input_dtype = in.at("dtype").str();
      if (m.input_dtype != "float32" && m.input_dtype != "int16")
        throw InputError(path + ": unsupported input dtype '" + m.input_dtype + "'");
      const mini_json::Value& ishape = in.at("shape");
      if (!ishape.is_array() || (ishape.items.size() != 2 && ishape.items.size() != 3))
        throw InputError(path + ": input.shape must be [batch, N] or [batch, C, N]");
      if (ishape.items[0].is_number()) m.batch = as_int(ishape.items[0], "input.shape[0]");
      if (ishape.items.size() == 3) m.channels = as_int(ishape.items[1], "input.shape[1]");
      if (as_int(ishape.items.back(), "input.shape[-1]") != m.num_samples)
        throw InputError(path + ": input.shape does not end in num_samples");
    }
    const mini_json::Value& oshape = root.at("output").at("shape");
    if (!oshape.is_array() || oshape.items.empty()) throw InputError(path + ": bad output.shape");
    for (size_t i = 1; i < oshape.items.size(); ++i) m.output_dims.push_back(as_int(oshape.items[i], "output.shape"));
    m.files = root.at("files");
    if (const mini_json::Value* g = root.find("golden"); g && g->is_object()) m.golden = *g;
    return m;
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError(path + ": " + e.what());
  }
}

// The model file's bytes, checked against the manifest unless !verify: these bytes are what
// gets loaded, so the file cannot change between the check and the load.
std::string read_model(const std::string& dir, const Manifest& m, const std::string& fname, bool verify) {
  const mini_json::Value* entry = m.files.find(fname);
  if (!entry) {
    std::string have;
    for (const auto& k : m.files.keys) have += (have.empty() ? "" : ", ") + k;
    throw InputError(dir + " has no " + fname + " (exported files: " + have + ")");
  }
  const std::string path = dir + "/" + fname;
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) throw InputError(path + ": missing (listed in manifest.json)");
  const std::string bytes = read_text(path);
  if (!verify) return bytes;
  const mini_json::Value* size = entry->find("size");
  const mini_json::Value* sha = entry->find("sha256");
  if (!size || !sha || !size->is_number() || !sha->is_string())
    throw InputError("manifest.json: files." + fname + " lacks size / sha256");
  if (static_cast<int64_t>(bytes.size()) != static_cast<int64_t>(size->number) || hex_sha256(bytes) != sha->string)
    throw InputError(path + ": sha256 does not match manifest.json; the file was modified or corrupted. "
                     "Re-export the bundle.");
  return bytes;
}

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", s);
  return buf;
}

// (1, N) or (1, C, N) tensor of the bundle's dtype from the WAV, after the manifest's checks.
torch::Tensor audio_tensor(const wav::Audio& a, const Manifest& m, const std::string& wav_path) {
  const long expected_sr = std::lround(m.sample_rate);
  if (a.sample_rate != expected_sr)
    throw InputError(wav_path + ": sample rate " + std::to_string(a.sample_rate) + " Hz does not match the bundle's " +
                     std::to_string(expected_sr) + " Hz (expected " + std::to_string(expected_sr) + ", got " +
                     std::to_string(a.sample_rate) + "); resample first");
  if (a.channels != m.channels)
    throw InputError(wav_path + ": expected " + std::to_string(m.channels) + " channel(s), got " +
                     std::to_string(a.channels));
  const int64_t got = static_cast<int64_t>(a.frames());
  const int64_t n = m.num_samples;
  if (got != n && m.length_policy != "pad_or_trim")
    throw InputError(wav_path + ": expected " + std::to_string(n) + " samples (" + fmt_seconds(n / m.sample_rate) +
                     " s at " + std::to_string(expected_sr) + " Hz), got " + std::to_string(got) + " (" +
                     fmt_seconds(got / m.sample_rate) + " s); the bundle's length_policy is '" + m.length_policy +
                     "' (export with --seconds / --num-samples to match, or pad/trim the audio)");
  const int64_t keep = std::min(got, n);  // pad_or_trim: zeros after the end, or cut the end
  const int64_t C = m.channels;
  std::vector<int64_t> shape = C == 1 ? std::vector<int64_t>{1, n} : std::vector<int64_t>{1, C, n};
  if (m.input_dtype == "float32") {
    torch::Tensor x = torch::zeros(shape, torch::kFloat32);
    float* p = x.data_ptr<float>();
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < keep; ++i)
        p[c * n + i] = a.is_float ? a.f32[i * C + c] : static_cast<float>(a.pcm16[i * C + c]) / 32768.0f;
    return x;
  }
  torch::Tensor x = torch::zeros(shape, torch::kInt16);
  int16_t* p = x.data_ptr<int16_t>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < keep; ++i) {
      if (!a.is_float) {
        p[c * n + i] = a.pcm16[i * C + c];
      } else {
        float v = std::nearbyint(a.f32[i * C + c] * 32768.0f);
        p[c * n + i] = static_cast<int16_t>(std::max(-32768.0f, std::min(32767.0f, v)));
      }
    }
  return x;
}

torch::Tensor first_tensor(const c10::IValue& v) {
  if (v.isTensor()) return v.toTensor();
  if (v.isTuple() && !v.toTupleRef().elements().empty()) return first_tensor(v.toTupleRef().elements()[0]);
  if (v.isList() && v.toListRef().size() > 0) return first_tensor(v.toListRef()[0]);
  throw std::runtime_error("the model returned no tensor");
}

// The loaded model, called with one tensor: model.pt (torch::jit) or model.pt2 (AOTInductor).
class Runner {
 public:
  Runner(const std::string& backend, const std::string& bytes) {
    if (backend == "torchscript") {
      std::istringstream stream(bytes);
      module_ = torch::jit::load(stream, torch::kCPU);
      module_.eval();
      return;
    }
    // Without this the .pt2 does not check input shapes / dtypes (read when the model loads).
    setenv("AOTI_RUNTIME_CHECK_INPUTS", "1", 1);
    // AOTInductor loads a package from a path: a private copy (0700 directory) of the
    // checked bytes, removed once the loader has extracted it.
    char tmpl[] = "/tmp/frontend_cli_pt2_XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("cannot create a private temporary directory");
    const std::string dir = tmpl, path = dir + "/model.pt2";
    struct Cleanup {
      std::string dir, path;
      ~Cleanup() { std::remove(path.c_str()); rmdir(dir.c_str()); }
    } cleanup{dir, path};
    {
      std::ofstream out(path, std::ios::binary);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!out) throw std::runtime_error("cannot write " + path);
    }
    // nx.export compiles with aot_inductor.check_lowerbound=False, so batch 1 passes the check.
    loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
  }

  torch::Tensor operator()(const torch::Tensor& x) {
    if (!loader_) return first_tensor(module_.forward({x}));
    std::vector<torch::Tensor> outs = loader_->run({x});
    if (outs.empty()) throw std::runtime_error("the model returned no tensor");
    return outs[0];
  }

  // Every output, for models with several inputs and outputs (streaming bundles).
  std::vector<torch::Tensor> run_all(const std::vector<torch::Tensor>& in) {
    if (loader_) return loader_->run(in);
    return stream::tensors_of(module_.forward(std::vector<c10::IValue>(in.begin(), in.end())));
  }

 private:
  torch::jit::script::Module module_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
};

// golden.npz's arrays, its bytes checked against manifest.json's golden entry.
std::map<std::string, npz::Array> read_golden(const std::string& dir, const Manifest& m) {
  if (!m.golden.is_object())
    throw InputError(dir + " has no golden.npz (exported before golden outputs were written); re-export it");
  const std::string path = dir + "/golden.npz";
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) throw InputError(path + ": missing (listed in manifest.json)");
  const std::string bytes = read_text(path);
  const mini_json::Value* size = m.golden.find("size");
  const mini_json::Value* sha = m.golden.find("sha256");
  if (!size || !sha || !size->is_number() || !sha->is_string())
    throw InputError("manifest.json: golden lacks size / sha256");
  if (static_cast<int64_t>(bytes.size()) != static_cast<int64_t>(size->number) || hex_sha256(bytes) != sha->string)
    throw InputError(path + ": sha256 does not match manifest.json; the file was modified or corrupted.");
  std::map<std::string, npz::Array> g;
  try {
    g = npz::read(bytes);
  } catch (const std::exception& e) {
    throw InputError(path + ": " + e.what());
  }
  for (const char* key : {"input", "output", "threshold", "relative", "db_per_unit", "window_db"})
    if (!g.count(key)) throw InputError(path + ": no array '" + std::string(key) + "'");
  const npz::Array& in = g["input"];
  const size_t rank = m.channels == 1 ? 2 : 3;
  std::vector<int64_t> spectrum{in.shape.empty() ? 0 : in.shape[0]};
  spectrum.insert(spectrum.end(), m.input_dims.begin(), m.input_dims.end());
  if (m.synthesis ? (in.descr != "<f4" || in.shape != spectrum)
                  : (in.descr != (m.input_dtype == "float32" ? "<f4" : "<i2") || in.shape.size() != rank ||
                     in.shape.back() != m.num_samples || (rank == 3 && in.shape[1] != m.channels)))
    throw InputError(path + ": input does not match the manifest's input (" + m.input_dtype + ")");
  std::vector<int64_t> want{in.shape[0]};
  want.insert(want.end(), m.output_dims.begin(), m.output_dims.end());
  if (g["output"].shape != want || g["output"].descr == "<i2")
    throw InputError(path + ": output does not have the manifest's output shape");
  if (g.count("scale") && (g["scale"].shape != want || g["scale"].descr == "<i2"))
    throw InputError(path + ": scale does not have the output's shape");
  return g;
}

// --check: every golden input through the model (one item per call, repeated to a fixed
// batch), compared with the golden float64 output as nx.verify(golden_only=True) does.
// Where golden.npz has a per-value 'scale' (an ill-conditioned per-item normalisation:
// nnaudio_export/tolerances.py), each error counts divided by its scale.
// Returns 0 when the metric is within the threshold, else 3.
int check_golden(std::map<std::string, npz::Array>& g, const Manifest& m, Runner& run, const std::string& what) {
  const npz::Array& in = g["input"];
  const npz::Array& ref = g["output"];
  const double thr = g["threshold"].at(0), dbu = g["db_per_unit"].at(0);
  const bool relative = g["relative"].at(0) != 0.0;
  const double window = (!relative && dbu > 0) ? g["window_db"].at(0) / dbu : -1.0;
  const int64_t items = in.shape[0], per_in = in.count() / items, per_out = ref.count() / items;
  const npz::Array* scale = g.count("scale") ? &g["scale"] : nullptr;
  std::vector<int64_t> shape(in.shape.begin(), in.shape.end());
  shape[0] = 1;
  double max_abs = 0.0, max_scaled = 0.0, max_scale = 1.0, peak = 0.0;
  for (int64_t i = 0; i < items; ++i) {
    const auto dtype = in.descr == "<f4" ? torch::kFloat32 : torch::kInt16;
    const int64_t bytes = in.descr == "<f4" ? 4 : 2;
    torch::Tensor x = torch::from_blob(const_cast<char*>(in.data.data()) + i * per_in * bytes, shape, dtype).clone();
    if (m.batch > 1) x = x.expand([&] { auto s = x.sizes().vec(); s[0] = m.batch; return s; }()).contiguous();
    torch::Tensor y;
    {
      c10::InferenceMode guard;
      y = run(x);
    }
    y = y.to(torch::kFloat64).contiguous();
    if (y.dim() < 1 || y.size(0) != x.size(0) || y[0].numel() != per_out)
      throw std::runtime_error("output has shape " + c10::str(y.sizes()) + "; expected " + std::to_string(per_out) +
                               " values per item");
    const double* p = y.data_ptr<double>();
    double item_max = -INFINITY;
    for (int64_t j = 0; j < per_out; ++j) item_max = std::max(item_max, ref.at(i * per_out + j));
    for (int64_t j = 0; j < per_out; ++j) {
      const double r = ref.at(i * per_out + j);
      peak = std::max(peak, std::fabs(r));
      const double err = std::isfinite(p[j]) ? std::fabs(p[j] - r) : INFINITY;
      if (window >= 0 && r < item_max - window) continue;
      max_abs = std::max(max_abs, err);
      if (scale) {
        const double s = scale->at(i * per_out + j);
        max_scale = std::max(max_scale, s);
        max_scaled = std::max(max_scaled, err / s);
      }
    }
  }
  double metric = relative ? (peak > 0 ? max_abs / peak : max_abs) : max_abs;
  if (scale) metric = relative ? (peak > 0 ? max_scaled / peak : max_scaled) : max_scaled;
  const bool ok = metric <= thr;
  char line[320];
  std::snprintf(line, sizeof line, "%lld items: max abs %.3g, max rel (peak) %.3g; %s%s <= %.0e%s: %s",
                static_cast<long long>(items), max_abs, peak > 0 ? max_abs / peak : max_abs,
                relative ? "max_rel" : "max_abs", scale ? " / scale" : "", thr,
                scale ? (" (ill-conditioned input: bound scaled per value, up to " +
                         std::to_string(max_scale) + ")").c_str() : "",
                ok ? "ok" : "FAILED");
  std::cout << "frontend_cli: golden check of " << what << ": " << line << "\n";
  return ok ? 0 : 3;
}

// The whole WAV as (1, L) / (1, C, L) of the bundle's dtype (checks as audio_tensor).
torch::Tensor whole_clip(const wav::Audio& a, Manifest m, const std::string& wav_path) {
  m.num_samples = static_cast<int64_t>(a.frames());
  m.length_policy = "exact";
  return audio_tensor(a, m, wav_path);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> pos;
  std::string backend = "torchscript", expected_sha256, stream_ms;
  int threads = 0;
  bool verify = true, check = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") { std::cout << kUsage; return 0; }
    if (a == "--no-verify") { verify = false; continue; }
    if (a == "--check") { check = true; continue; }
    std::string* value = nullptr;
    std::string number;
    std::string name = a.substr(0, a.find('='));
    if (name == "--backend") value = &backend;
    if (name == "--expect-sha256") value = &expected_sha256;
    if (name == "--threads") value = &number;
    if (name == "--stream") value = &stream_ms;
    if (value) {
      if (a.find('=') != std::string::npos) {
        *value = a.substr(a.find('=') + 1);
      } else {
        if (++i >= argc) { std::cerr << "frontend_cli: error: " << a << " needs a value\n" << kUsage; return 2; }
        *value = argv[i];
      }
      if (value == &number) {
        char* end = nullptr;
        long n = std::strtol(number.c_str(), &end, 10);
        if (number.empty() || *end != '\0' || n < 1 || n > 1024) {
          std::cerr << "frontend_cli: error: --threads must be an integer in 1..1024, got '" << number << "'\n";
          return 2;
        }
        threads = static_cast<int>(n);
      }
      continue;
    }
    if (a.size() > 1 && a[0] == '-') { std::cerr << "frontend_cli: error: unknown option " << a << "\n" << kUsage; return 2; }
    pos.push_back(a);
  }
  if (pos.size() != (check ? 1u : 3u)) { std::cerr << kUsage; return 2; }
  if (backend != "torchscript" && backend != "pt2") {
    std::cerr << "frontend_cli: error: --backend must be torchscript or pt2, got '" << backend << "'\n";
    return 2;
  }
  const std::string dir = pos[0];
  const std::string fname = backend == "pt2" ? "model.pt2" : "model.pt";

  if (threads > 0) at::set_num_threads(threads);
  if (check) {
    if (!verify) { std::cerr << "frontend_cli: error: --check always verifies the files; drop --no-verify\n"; return 2; }
    Manifest m;
    std::map<std::string, npz::Array> golden;
    std::string model_bytes;
    try {
      m = read_manifest(dir, expected_sha256, true);
      model_bytes = read_model(dir, m, fname, true);
      const mini_json::Value* dev = m.files.at(fname).find("device");
      if (backend == "pt2" && dev && dev->is_string() && dev->string != "cpu")
        throw InputError(fname + " was compiled for " + dev->string + "; this program runs on cpu");
      golden = read_golden(dir, m);
    } catch (const std::exception& e) {
      std::cerr << "frontend_cli: error: " << e.what() << "\n";
      return 2;
    }
    try {
      Runner run(backend, model_bytes);
      return check_golden(golden, m, run, m.name + " " + fname + " (" + backend + ")");
    } catch (const std::exception& e) {
      std::cerr << "frontend_cli: error: inference failed (" << backend << "): " << e.what() << "\n";
      return 1;
    }
  }
  const std::string wav_path = pos[1], out_path = pos[2];

  Manifest m;
  torch::Tensor x;
  std::string model_bytes;
  try {
    m = read_manifest(dir, expected_sha256);
    model_bytes = read_model(dir, m, fname, verify);
    if (backend == "pt2") {
      const mini_json::Value* dev = m.files.at(fname).find("device");
      if (dev && dev->is_string() && dev->string != "cpu")
        throw InputError(fname + " was compiled for " + dev->string + "; this program runs on cpu");
    }
    if ((m.chunk_samples > 0) != !stream_ms.empty())
      throw InputError(m.chunk_samples > 0 ? dir + " is a streaming bundle: run it with --stream MS"
                                           : dir + " is not a streaming bundle (nnaudio-export build --streaming)");
    x = m.chunk_samples > 0 ? whole_clip(wav::read(wav_path), m, wav_path) : audio_tensor(wav::read(wav_path), m, wav_path);
  } catch (const std::exception& e) {
    std::cerr << "frontend_cli: error: " << e.what() << "\n";
    return 2;
  }
  if (m.chunk_samples > 0) {
    char* end = nullptr;
    const double ms = std::strtod(stream_ms.c_str(), &end);
    if (*end != '\0' || !(ms > 0)) {
      std::cerr << "frontend_cli: error: --stream needs a positive number of milliseconds, got '" << stream_ms << "'\n";
      return 2;
    }
    const int64_t piece = std::max<int64_t>(1, std::llround(ms * m.sample_rate / 1000.0));
    try {
      c10::InferenceMode guard;
      Runner runner(backend, model_bytes);
      torch::Tensor frames = stream::run(x, m.chunk_samples, m.state_size, m.frame_axis, piece,
                                         [&](std::vector<torch::Tensor> in) { return runner.run_all(in); });
      frames = frames.to(torch::kFloat32).contiguous();
      npy::write_f32(out_path, frames.data_ptr<float>(), frames.sizes().vec());
      std::cerr << "frontend_cli: " << m.name << " streamed in " << m.chunk_samples << "-sample chunks (" << backend
                << "): " << c10::str(x.sizes()) << " -> " << c10::str(frames.sizes()) << " -> " << out_path << "\n";
    } catch (const std::exception& e) {
      std::cerr << "frontend_cli: error: streaming failed (" << backend << "): " << e.what() << "\n";
      return 1;
    }
    return 0;
  }
  // A fixed-batch bundle: repeat the clip to fill the batch, keep item 0.
  if (m.batch > 1) x = x.expand([&] { auto s = x.sizes().vec(); s[0] = m.batch; return s; }()).contiguous();
  const int64_t batch = x.size(0);

  torch::Tensor y;
  auto t0 = std::chrono::steady_clock::now();
  try {
    Runner run(backend, model_bytes);
    c10::InferenceMode guard;
    t0 = std::chrono::steady_clock::now();
    y = run(x);
  } catch (const std::exception& e) {
    std::cerr << "frontend_cli: error: inference failed (" << backend << "): " << e.what() << "\n";
    return 1;
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  try {
    y = y.to(torch::kFloat32).contiguous();
    if (y.dim() < 1 || y.size(0) != batch)
      throw std::runtime_error("output has shape " + c10::str(y.sizes()) + "; expected a batch axis of " +
                               std::to_string(batch));
    torch::Tensor item = y[0].contiguous();
    std::vector<int64_t> dims = item.sizes().vec();
    if (dims != m.output_dims)
      throw std::runtime_error("output shape " + c10::str(item.sizes()) + " differs from manifest.json's " +
                               c10::str(c10::IntArrayRef(m.output_dims)));
    npy::write_f32(out_path, item.data_ptr<float>(), dims);
    std::cerr << "frontend_cli: " << m.name << " " << fname << " (" << backend << "): "
              << c10::str(x.sizes()) << " " << m.input_dtype << " -> " << c10::str(item.sizes()) << " float32 in "
              << fmt_seconds(ms / 1000.0) << " s -> " << out_path << "\n";
  } catch (const std::exception& e) {
    std::cerr << "frontend_cli: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
