// The worked example of docs/FORMAT.md, recomputed with the engine and
// compared to tests/format/worked_example.json, which the independent Python
// reader (tests/format/verify_format.py selftest) checks too: docs, engine
// and an independent implementation agree byte for byte.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "crypto/contents_cipher.h"
#include "crypto/name_cipher.h"
#include "crypto/volume_key.h"

namespace scratchcrypt {
namespace {

std::string example_path() {
  if (const char* dir = std::getenv("SCRATCHCRYPT_SOURCE_DIR")) {
    return std::string(dir) + "/tests/format/worked_example.json";
  }
  namespace fs = std::filesystem;
  const fs::path relative = fs::path("tests") / "format" / "worked_example.json";
  // __FILE__ is "tests/unit/format_example_test.cc" (relative to the source
  // root, where make runs) or absolute.
  fs::path source = fs::path(__FILE__).parent_path() / ".." / "format" / "worked_example.json";
  if (fs::exists(source)) return source.string();
  // Run from elsewhere: the binary is <root>/build*/unit_tests.
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && fs::exists(exe.parent_path().parent_path() / relative)) {
    return (exe.parent_path().parent_path() / relative).string();
  }
  return source.string();
}

class WorkedExample : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ifstream in(example_path());
    ASSERT_TRUE(in) << "cannot open " << example_path()
                    << " (run from the source tree or set SCRATCHCRYPT_SOURCE_DIR)";
    std::stringstream ss;
    ss << in.rdbuf();
    json_ = ss.str();
  }

  // The string value of "key" in the object "section" (or at top level when
  // section is empty). Enough JSON for this one flat, generated file.
  std::string field(std::string_view section, std::string_view key) const {
    size_t from = 0;
    if (!section.empty()) {
      from = json_.find("\"" + std::string(section) + "\"");
      EXPECT_NE(from, std::string::npos) << section;
    }
    size_t at = json_.find("\"" + std::string(key) + "\":", from);
    EXPECT_NE(at, std::string::npos) << section << "." << key;
    if (at == std::string::npos) return {};
    size_t open = json_.find('"', json_.find(':', at) + 1);
    size_t close = json_.find('"', open + 1);
    return json_.substr(open + 1, close - open - 1);
  }

  static std::vector<uint8_t> unhex(const std::string& hex) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) {
      out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    return out;
  }
  static std::string hex(std::span<const uint8_t> bytes) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (uint8_t b : bytes) {
      s += digits[b >> 4];
      s += digits[b & 15];
    }
    return s;
  }
  static std::span<const uint8_t> as_bytes(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
  }

  VolumeKey key() const { return VolumeKey::from_bytes(unhex(field("", "volume_key"))); }
  FileId file_id() const {
    FileId id;
    auto b = unhex(field("", "file_id"));
    std::copy(b.begin(), b.end(), id.bytes.begin());
    return id;
  }
  DirId dir_id() const {
    DirId id;
    auto b = unhex(field("", "dir_id"));
    std::copy(b.begin(), b.end(), id.bytes.begin());
    return id;
  }

  std::string json_;
};

TEST_F(WorkedExample, VolumeKeyIsBytes00To3f) {
  std::vector<uint8_t> want(64);
  for (size_t i = 0; i < 64; ++i) want[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(unhex(field("", "volume_key")), want);
}

TEST_F(WorkedExample, Subkeys) {
  VolumeKey k = key();
  EXPECT_EQ(hex(k.derive(purpose::kContents, 64).bytes()), field("subkeys", "contents"));
  EXPECT_EQ(hex(k.derive(purpose::kTail, 32).bytes()), field("subkeys", "tail"));
  EXPECT_EQ(hex(k.derive(purpose::kNames, 64).bytes()), field("subkeys", "names"));
  EXPECT_EQ(hex(k.check_value()), field("subkeys", "key-check"));
}

TEST_F(WorkedExample, FileContents) {
  VolumeKey k = key();
  ContentsCipher engine(k);
  for (const char* label : {"file_20", "file_3"}) {
    const std::string plain = field(label, "plaintext_ascii");
    std::vector<uint8_t> out(plain.size());
    engine.encrypt(file_id(), 0, as_bytes(plain), out);
    EXPECT_EQ(hex(out), field(label, "ciphertext")) << label;
    std::vector<uint8_t> back(out.size());
    engine.decrypt(file_id(), 0, out, back);
    EXPECT_EQ(std::string(back.begin(), back.end()), plain) << label;
  }
  std::string big(4096, 'A');
  big += "xyz";
  std::vector<uint8_t> out(big.size());
  engine.encrypt(file_id(), 0, as_bytes(big), out);
  EXPECT_EQ(hex(std::span<const uint8_t>(out.data(), 32)), field("file_4099", "unit0_first_32"));
  EXPECT_EQ(hex(std::span<const uint8_t>(out.data() + 4096, 3)), field("file_4099", "unit1_tail"));
}

TEST_F(WorkedExample, Names) {
  VolumeKey k = key();
  NameCipher names(k);
  BackingName short_name = names.encrypt_name(dir_id(), field("name", "plaintext"));
  EXPECT_FALSE(short_name.is_long());
  EXPECT_EQ(short_name.name, field("name", "backing"));

  BackingName long_name = names.encrypt_name(dir_id(), std::string(200, 'L'));
  EXPECT_TRUE(long_name.is_long());
  EXPECT_EQ(long_name.name, field("long_name", "backing"));
  EXPECT_EQ(companion_of(long_name.name), field("long_name", "companion"));
  EXPECT_EQ(long_name.long_text, field("long_name", "companion_text"));
}

TEST_F(WorkedExample, SymlinkAndXattr) {
  VolumeKey k = key();
  NameCipher names(k);
  EXPECT_EQ(names.decrypt_symlink(field("symlink", "stored")),
            std::optional<std::string>(field("symlink", "target")));
  const std::string xname = field("xattr", "name");
  EXPECT_EQ(names.encrypt_xattr_name(xname), field("xattr", "stored_name"));
  const std::string value = field("xattr", "value_ascii");
  auto sealed = names.encrypt_xattr_value(unhex(field("xattr", "object_id")), xname,
                                          as_bytes(value));
  EXPECT_EQ(hex(sealed), field("xattr", "stored_value"));
}

}  // namespace
}  // namespace scratchcrypt
