#include "tune/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <set>
#include <string_view>
#include <tuple>

#include <nlohmann/json.hpp>

#include "tune/io/files.h"

namespace tune::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors is little-endian; tensors are mapped without byte swapping");

namespace {

using nlohmann::json;

// The reference implementation refuses larger headers; a length this big means a corrupt file or
// one that is not safetensors at all (a PyTorch zip starts with "PK..", a huge length).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kFix = "re-download or re-export the file";

// Every dtype string the safetensors format defines, so that a valid file we cannot read is told
// apart from a corrupt one.
constexpr std::string_view kKnownDtypes[] = {
    "BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
    "I16",  "U16", "F16", "BF16",    "I32",     "U32",     "F32",         "C64",
    "F64",  "I64", "U64", "F4",      "F6_E2M3", "F6_E3M2"};

std::string quoted(const std::string& s) {
  return str('"', s, '"');
}

// A JSON value for a message, cut short so a corrupt header cannot flood the terminal.
std::string brief(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

struct Entry {
  std::string name;
  TensorInfo info;
};

class HeaderParser {
 public:
  explicit HeaderParser(const std::string& path) : path_(path) {}

  [[noreturn]] void fail(const std::string& what, const char* fix = kFix) const {
    throw Error(str(path_, ": ", what, "; ", fix));
  }

  json parse(std::string_view text) const {
    if (text.empty()) fail("the header is empty (header length 0); a header must start with '{'");
    if (text.front() != '{')
      fail(str("the header must start with '{' but starts with byte 0x", std::hex,
               static_cast<unsigned>(static_cast<unsigned char>(text.front())),
               "; this is not a safetensors file or it is corrupt"));
    // Duplicate top-level keys would silently shadow each other in the parsed object.
    std::set<std::string> seen;
    auto on_event = [&](int depth, json::parse_event_t event, json& value) {
      if (event == json::parse_event_t::key && depth == 1) {
        const auto& key = value.get_ref<const std::string&>();
        if (!seen.insert(key).second)
          fail(str("tensor ", quoted(key), " appears twice in the header"));
      }
      return true;
    };
    try {
      return json::parse(text.begin(), text.end(), on_event);
    } catch (const json::parse_error& e) {
      // Keep nlohmann's reason, not its "[json.exception...] at line 1, column N" prefix: a
      // header is one line, so the byte offset says it all.
      std::string_view what(e.what());
      size_t column = what.find("column ");
      size_t colon = what.find(": ", column == std::string_view::npos ? 0 : column);
      std::string_view reason = colon == std::string_view::npos ? what : what.substr(colon + 2);
      fail(str("the header is not valid JSON (at header byte ", std::min(e.byte, text.size()),
               " of ", text.size(), ": ", reason, ")"));
    }
  }

  std::map<std::string, std::string> metadata(const json& m) const {
    if (!m.is_object())
      fail(str("\"__metadata__\" must be an object of string values, got ", m.type_name()));
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : m.items()) {
      if (!v.is_string())
        fail(str("\"__metadata__\" must map strings to strings, but key ", quoted(k), " has ",
                 v.type_name(), " value ", brief(v)));
      out.emplace(k, v.get<std::string>());
    }
    return out;
  }

  Entry entry(const std::string& name, const json& e) const {
    std::string where = str("tensor ", quoted(name));
    if (!e.is_object())
      fail(str(where,
               ": its header entry must be an object with dtype, shape and data_offsets, got ",
               brief(e)));
    Entry out{name, {}};

    auto dt = e.find("dtype");
    if (dt == e.end() || !dt->is_string())
      fail(str(where, ": \"dtype\" must be a string such as \"BF16\", got ",
               dt == e.end() ? "nothing" : brief(*dt)));
    const auto& dtype = dt->get_ref<const std::string&>();
    if (!dtype_from_safetensors(dtype, &out.info.dtype)) {
      bool known = std::find(std::begin(kKnownDtypes), std::end(kKnownDtypes), dtype) !=
                   std::end(kKnownDtypes);
      if (known)
        fail(str(where, " has unsupported dtype ", quoted(dtype),
                 ": tune.cpp reads F32, F64, BF16, F16, I32, I64 and U8"),
             "convert the checkpoint to one of these (e.g. BF16) and retry");
      fail(str(where, " has unknown dtype ", quoted(dtype),
               ", which is not a safetensors dtype (F32, BF16, F16, I64, ...)"));
    }

    auto sh = e.find("shape");
    if (sh == e.end() || !sh->is_array())
      fail(str(where, ": \"shape\" must be an array of non-negative integers, got ",
               sh == e.end() ? "nothing" : brief(*sh)));
    // Byte count in 64 bits with overflow checks: a corrupt shape must not wrap around into a
    // plausible size.
    uint64_t bytes = dtype_size(out.info.dtype);
    bool overflow = false;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        fail(str(where, ": \"shape\" must be an array of non-negative integers, got ", brief(*sh)));
      out.info.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
      overflow = overflow || __builtin_mul_overflow(bytes, d.get<uint64_t>(), &bytes);
    }

    auto off = e.find("data_offsets");
    if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      fail(str(where, ": \"data_offsets\" must be [begin, end] with non-negative integers, got ",
               off == e.end() ? "nothing" : brief(*off)));
    out.info.begin = (*off)[0].get<uint64_t>();
    out.info.end = (*off)[1].get<uint64_t>();
    if (out.info.begin > out.info.end)
      fail(str(where, ": data_offsets [", out.info.begin, ", ", out.info.end,
               "] has begin after end"));

    uint64_t span = out.info.end - out.info.begin;
    if (overflow || bytes != span)
      fail(str(where, ": dtype/shape does not match the byte count: dtype ", dtype, " and shape ",
               shape_str(out.info.shape), " need ",
               overflow ? std::string("more than 2^64") : std::to_string(bytes),
               " bytes, but data_offsets [", out.info.begin, ", ", out.info.end, "] span ", span,
               " bytes"));
    return out;
  }

  // Sorted by offset, tensors must tile [0, data_bytes) exactly.
  void check_layout(const std::vector<Entry>& sorted, uint64_t data_bytes) const {
    uint64_t pos = 0;
    const Entry* prev = nullptr;
    for (const Entry& e : sorted) {
      if (e.info.begin < pos)
        fail(str("tensors ", quoted(prev->name), " (bytes [", prev->info.begin, ", ",
                 prev->info.end, ")) and ", quoted(e.name), " (bytes [", e.info.begin, ", ",
                 e.info.end, ")) overlap in the data section"));
      if (e.info.begin > pos)
        fail(prev ? str("gap in the data section: bytes [", pos, ", ", e.info.begin,
                        ") between tensors ", quoted(prev->name), " and ", quoted(e.name),
                        " belong to no tensor")
                  : str("gap in the data section: bytes [0, ", e.info.begin,
                        ") before the first tensor ", quoted(e.name), " belong to no tensor"));
      pos = e.info.end;
      prev = &e;
    }
    if (pos > data_bytes)
      fail(str("the file is truncated: its tensors need ", pos, " bytes of data but only ",
               data_bytes, " follow the header (", pos - data_bytes, " bytes missing",
               prev ? str(", in tensor ", quoted(prev->name)) : std::string(), ")"));
    if (pos < data_bytes)
      fail(str("the file has ", data_bytes - pos, " trailing bytes after the last tensor (",
               "the tensors end at data byte ", pos, " but the data section holds ", data_bytes,
               " bytes)"));
  }

 private:
  const std::string& path_;
};

}  // namespace

struct SafetensorsFile::State {
  std::string path;
  std::shared_ptr<void> mapping;  // munmaps when the last file object or tensor view is gone
  const char* data = nullptr;     // start of the data section
  uint64_t file_size = 0;
  uint64_t data_size = 0;
  std::vector<std::string> names;
  std::map<std::string, TensorInfo> infos;
  std::map<std::string, std::string> metadata;
};

SafetensorsFile::SafetensorsFile() : state_(std::make_shared<const State>()) {}

SafetensorsFile::SafetensorsFile(std::shared_ptr<const State> state) : state_(std::move(state)) {}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    throw Error(str("cannot open ", path, ": ", std::strerror(err),
                    err == ENOENT ? "; check the path" : ""));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(str("cannot read ", path, ": it is not a regular file; give a .safetensors file"));
  }
  auto size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw Error(str(path, ": the file is truncated: it has ", size,
                    " bytes, but a safetensors file starts with an 8-byte header length; ", kFix));
  }
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);  // the mapping keeps the file open
  if (base == MAP_FAILED)
    throw Error(
        str("cannot map ", path, " (", size, " bytes) into memory: ", std::strerror(map_err)));
  std::shared_ptr<void> mapping(base, [size](void* p) { ::munmap(p, size); });
  const char* bytes = static_cast<const char*>(base);

  HeaderParser parser(path);
  uint64_t n;
  std::memcpy(&n, bytes, 8);
  if (n > size - 8)
    parser.fail(str("header longer than the file: the first 8 bytes give a header length of ", n,
                    " bytes but only ", size - 8,
                    " bytes follow; the file is truncated or is not a safetensors file"));
  if (n > kMaxHeaderBytes)
    parser.fail(str("the header length ", n, " is over the format's limit of ", kMaxHeaderBytes,
                    " bytes; the file is corrupt or is not a safetensors file"));

  json header = parser.parse(std::string_view(bytes + 8, n));
  if (!header.is_object()) parser.fail("the header is not a JSON object");

  auto state = std::make_shared<State>();
  std::vector<Entry> entries;
  entries.reserve(header.size());
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__")
      state->metadata = parser.metadata(value);
    else
      entries.push_back(parser.entry(key, value));
  }
  // Ties (zero-sized tensors at one offset) are broken by name so names() is deterministic.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.info.begin, a.info.end, a.name) < std::tie(b.info.begin, b.info.end, b.name);
  });
  uint64_t data_size = size - 8 - n;
  parser.check_layout(entries, data_size);

  state->path = path;
  state->mapping = std::move(mapping);
  state->data = bytes + 8 + n;
  state->file_size = size;
  state->data_size = data_size;
  state->names.reserve(entries.size());
  for (Entry& e : entries) {
    state->names.push_back(e.name);
    state->infos.emplace(std::move(e.name), std::move(e.info));
  }
  return SafetensorsFile(std::move(state));
}

const std::string& SafetensorsFile::path() const {
  return state_->path;
}
const std::vector<std::string>& SafetensorsFile::names() const {
  return state_->names;
}
const std::map<std::string, std::string>& SafetensorsFile::metadata() const {
  return state_->metadata;
}
uint64_t SafetensorsFile::file_size() const {
  return state_->file_size;
}
uint64_t SafetensorsFile::data_size() const {
  return state_->data_size;
}

bool SafetensorsFile::contains(const std::string& name) const {
  return state_->infos.count(name) != 0;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = state_->infos.find(name);
  if (it == state_->infos.end())
    throw Error(str("tensor ", quoted(name), " not found in ", state_->path, " (",
                    state_->names.size(), " tensors); check the tensor name and the file"));
  return it->second;
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& i = info(name);
  // The mapping is PROT_READ; the const_cast only fits Tensor's mutable pointer type.
  return Tensor::wrap(const_cast<char*>(state_->data + i.begin), i.shape, i.dtype, state_->mapping);
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps "__metadata__" first and tensors in data order, as the reference writer
  // does, so headers read naturally.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string_view> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    TUNE_CHECK(name != "__metadata__", "cannot write ", path,
               ": \"__metadata__\" is reserved in safetensors and cannot name a tensor");
    TUNE_CHECK(seen.insert(name).second, "cannot write ", path, ": tensor ", quoted(name),
               " is given twice; tensor names must be unique");
    TUNE_CHECK(t.defined(), "cannot write ", path, ": tensor ", quoted(name), " is undefined");
    TUNE_CHECK(t.device() == Device::cpu, "cannot write ", path, ": tensor ", quoted(name),
               " is on the GPU; copy it to the CPU first");
    uint64_t n = t.nbytes();
    header[name] = {{"dtype", dtype_to_safetensors(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    throw Error(str("cannot write ", path, ": tensor names and metadata must be valid UTF-8 (",
                    e.what(), ")"));
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  AtomicFile file(path);
  uint64_t n = text.size();
  file.write(&n, 8);
  file.write(text);
  for (const auto& [name, t] : tensors) {
    if (t.nbytes() > 0) file.write(t.raw(), t.nbytes());
  }
  file.commit();
}

}  // namespace tune::io
