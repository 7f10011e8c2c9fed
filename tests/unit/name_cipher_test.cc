// NameCipher: names (short and long form), symlinks, xattrs, base64url.
#include "crypto/name_cipher.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace scratchcrypt {
namespace {

VolumeKey test_key(uint8_t start = 0) {
  std::vector<uint8_t> k(kVolumeKeyBytes);
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(start + i);
  return VolumeKey::from_bytes(k);
}

DirId dir_id(uint8_t b) {
  DirId d;
  d.bytes.fill(b);
  return d;
}

bool backing_charset_ok(const std::string& s) {
  for (char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

class NameCipherTest : public ::testing::Test {
 protected:
  NameCipherTest() : key_(test_key()), names_(key_) {}

  // Encrypts, checks the backing-name rules, decrypts; returns the backing name.
  BackingName round_trip(const DirId& dir, const std::string& name) {
    BackingName b = names_.encrypt_name(dir, name);
    EXPECT_LE(b.name.size(), kMaxNameBytes);
    EXPECT_FALSE(b.name.empty());
    if (b.is_long()) {
      EXPECT_TRUE(is_long_name(b.name)) << b.name;
      EXPECT_EQ(b.name.substr(0, 2), ".L");
      EXPECT_TRUE(backing_charset_ok(b.name.substr(2))) << b.name;
      EXPECT_TRUE(backing_charset_ok(b.long_text));
      EXPECT_GT(b.long_text.size(), kMaxNameBytes);
      EXPECT_TRUE(is_companion_name(companion_of(b.name)));
      EXPECT_EQ(companion_of(b.name).substr(2), b.name.substr(2));
      auto back = names_.decrypt_name(dir, b.long_text);
      EXPECT_TRUE(back.has_value());
      if (back) {
        EXPECT_EQ(*back, name);
      }
    } else {
      EXPECT_TRUE(backing_charset_ok(b.name)) << b.name;
      EXPECT_FALSE(is_long_name(b.name));
      EXPECT_FALSE(is_companion_name(b.name));
      EXPECT_NE(b.name[0], '.');
      auto back = names_.decrypt_name(dir, b.name);
      EXPECT_TRUE(back.has_value());
      if (back) {
        EXPECT_EQ(*back, name);
      }
    }
    return b;
  }

  VolumeKey key_;
  NameCipher names_;
};

TEST_F(NameCipherTest, EveryLengthRoundTripsAndPicksTheRightForm) {
  const DirId dir = dir_id(7);
  for (size_t n = 1; n <= kMaxNameBytes; ++n) {
    std::string name(n, 'a' + static_cast<char>(n % 26));
    BackingName b = round_trip(dir, name);
    if (n <= 175) {
      EXPECT_FALSE(b.is_long()) << "length " << n;
    } else {
      EXPECT_TRUE(b.is_long()) << "length " << n;
    }
  }
}

TEST_F(NameCipherTest, ShortFormLimitIs175Bytes) {
  const DirId dir = dir_id(1);
  EXPECT_EQ(round_trip(dir, std::string(175, 'x')).name.size(), 255u);
  EXPECT_EQ(round_trip(dir, std::string(1, 'x')).name.size(), 23u);  // (16+1)*4/3 rounded up
  BackingName l = round_trip(dir, std::string(176, 'x'));
  EXPECT_TRUE(l.is_long());
  EXPECT_EQ(l.name.size(), 2u + 43u);  // ".L" + base64url(32-byte hash)
  EXPECT_EQ(l.long_text.size(), 256u);
  EXPECT_EQ(round_trip(dir, std::string(255, 'x')).long_text.size(), 362u);  // ceil(271*4/3)
}

TEST_F(NameCipherTest, Utf8AndAllAllowedBytes) {
  const DirId dir = dir_id(2);
  round_trip(dir, "\xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80.txt");
  std::string all;
  for (int c = 1; c <= 255; ++c) {
    if (c != '/') all.push_back(static_cast<char>(c));
  }
  ASSERT_EQ(all.size(), 254u);
  EXPECT_TRUE(round_trip(dir, all).is_long());
  round_trip(dir, all.substr(0, 100));
  round_trip(dir, all.substr(150));
  round_trip(dir, ".hidden");
  round_trip(dir, "...");
  round_trip(dir, ".L");
  round_trip(dir, ".Nfoo");
}

TEST_F(NameCipherTest, DeterministicWithinADirDifferentAcrossDirs) {
  for (size_t n : {1u, 20u, 175u, 200u}) {
    std::string name(n, 'q');
    auto a1 = names_.encrypt_name(dir_id(1), name);
    auto a2 = names_.encrypt_name(dir_id(1), name);
    auto b = names_.encrypt_name(dir_id(2), name);
    EXPECT_EQ(a1.name, a2.name);
    EXPECT_EQ(a1.long_text, a2.long_text);
    EXPECT_NE(a1.name, b.name);
    // Another volume key: different too.
    VolumeKey k2 = test_key(1);
    NameCipher other(k2);
    EXPECT_NE(other.encrypt_name(dir_id(1), name).name, a1.name);
  }
  EXPECT_NE(names_.encrypt_name(dir_id(1), "a").name, names_.encrypt_name(dir_id(1), "b").name);
}

TEST_F(NameCipherTest, CorruptedOrForeignNamesDoNotDecrypt) {
  const DirId dir = dir_id(3);
  const std::string text = names_.encrypt_name(dir, "report.pdf").name;
  for (size_t i = 0; i < text.size(); ++i) {
    std::string bad = text;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(names_.decrypt_name(dir, bad).has_value()) << "position " << i;
  }
  EXPECT_FALSE(names_.decrypt_name(dir, text.substr(0, text.size() - 1)).has_value());
  EXPECT_FALSE(names_.decrypt_name(dir, text + "A").has_value());
  EXPECT_FALSE(names_.decrypt_name(dir, "").has_value());
  EXPECT_FALSE(names_.decrypt_name(dir, "not*base64!").has_value());
  EXPECT_FALSE(names_.decrypt_name(dir, ".scratchcrypt-volume").has_value());
  EXPECT_FALSE(names_.decrypt_name(dir, "AAAAAAAAAAAAAAAAAAAAAAA").has_value());
  // Another directory, another key.
  EXPECT_FALSE(names_.decrypt_name(dir_id(4), text).has_value());
  VolumeKey k2 = test_key(9);
  NameCipher other(k2);
  EXPECT_FALSE(other.decrypt_name(dir, text).has_value());
  // The long form's companion text, in another dir.
  auto l = names_.encrypt_name(dir, std::string(200, 'z'));
  EXPECT_FALSE(names_.decrypt_name(dir_id(4), l.long_text).has_value());
}

// The ciphertext of a name that is not a valid name component ("/", ".",
// "..", empty) is refused on the way back even though it authenticates.
TEST_F(NameCipherTest, RefusesInvalidComponentsOnDecrypt) {
  const DirId dir = dir_id(5);
  auto sealed = [&](std::string_view s) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(s.data());
    return base64url_encode(names_.seal(
        {std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("name"), 4), dir.bytes},
        std::span<const uint8_t>(p, s.size())));
  };
  EXPECT_EQ(names_.decrypt_name(dir, sealed("ok")), std::optional<std::string>("ok"));
  EXPECT_FALSE(names_.decrypt_name(dir, sealed("a/b")).has_value());
  EXPECT_FALSE(names_.decrypt_name(dir, sealed(".")).has_value());
  EXPECT_FALSE(names_.decrypt_name(dir, sealed("..")).has_value());
  EXPECT_FALSE(names_.decrypt_name(dir, sealed(std::string("a\0b", 3))).has_value());
}

TEST_F(NameCipherTest, Symlinks) {
  std::vector<std::string> targets = {"x", "../lib/libfoo.so.1", "/abs/path with spaces/\xc3\xa9",
                                      std::string(3000, 'p')};
  for (const auto& t : targets) {
    std::string s1 = names_.encrypt_symlink(t);
    std::string s2 = names_.encrypt_symlink(t);
    EXPECT_NE(s1, s2) << "random nonce";
    EXPECT_TRUE(backing_charset_ok(s1));
    EXPECT_EQ(names_.decrypt_symlink(s1), std::optional<std::string>(t));
    EXPECT_EQ(names_.decrypt_symlink(s2), std::optional<std::string>(t));
    std::string bad = s1;
    bad[bad.size() / 2] = bad[bad.size() / 2] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(names_.decrypt_symlink(bad).has_value());
  }
  // A 3000-byte target still fits a backing symlink (< 4096 bytes).
  EXPECT_LT(names_.encrypt_symlink(std::string(3000, 'p')).size(), 4096u);
  EXPECT_FALSE(names_.decrypt_symlink("").has_value());
  EXPECT_FALSE(names_.decrypt_symlink("AAAA").has_value());
}

TEST_F(NameCipherTest, XattrNamesAndValues) {
  const std::string name = "user.checksum";
  std::string stored = names_.encrypt_xattr_name(name);
  EXPECT_EQ(stored.substr(0, kXattrPrefix.size()), kXattrPrefix);
  EXPECT_TRUE(backing_charset_ok(stored.substr(kXattrPrefix.size())));
  EXPECT_EQ(stored, names_.encrypt_xattr_name(name)) << "deterministic, so it can be looked up";
  EXPECT_EQ(names_.decrypt_xattr_name(stored), std::optional<std::string>(name));
  EXPECT_NE(stored, names_.encrypt_xattr_name("user.other"));
  EXPECT_FALSE(names_.decrypt_xattr_name("user.plain").has_value());
  EXPECT_FALSE(names_.decrypt_xattr_name(std::string(kXattrPrefix) + "AAAA").has_value());

  const std::vector<uint8_t> object_a(8, 1), object_b(8, 2);
  for (const std::vector<uint8_t>& value :
       {std::vector<uint8_t>{}, std::vector<uint8_t>{0}, std::vector<uint8_t>(1000, 0xab)}) {
    auto sealed = names_.encrypt_xattr_value(object_a, name, value);
    EXPECT_EQ(sealed.size(), kSivTagBytes + 1 + value.size());
    auto back = names_.decrypt_xattr_value(object_a, name, sealed);
    ASSERT_TRUE(back.has_value()) << "value length " << value.size();
    EXPECT_EQ(*back, value);
    // Bound to the object and to the name.
    EXPECT_FALSE(names_.decrypt_xattr_value(object_b, name, sealed).has_value());
    EXPECT_FALSE(names_.decrypt_xattr_value(object_a, "user.other", sealed).has_value());
    auto bad = sealed;
    bad.back() ^= 1;
    EXPECT_FALSE(names_.decrypt_xattr_value(object_a, name, bad).has_value());
  }
  EXPECT_FALSE(names_.decrypt_xattr_value(object_a, name, std::vector<uint8_t>(5)).has_value());
}

TEST(Base64Url, RoundTripAndAlphabet) {
  for (size_t n = 0; n < 70; ++n) {
    std::vector<uint8_t> bytes(n);
    for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<uint8_t>(0xff - i * 13);
    std::string text = base64url_encode(bytes);
    EXPECT_EQ(text.size(), (n * 4 + 2) / 3) << "no padding";
    EXPECT_EQ(text.find('='), std::string::npos);
    EXPECT_EQ(base64url_decode(text), std::optional<std::vector<uint8_t>>(bytes));
  }
  const std::vector<uint8_t> ff = {0xfb, 0xff, 0xbf};
  EXPECT_EQ(base64url_encode(ff), "-_-_");
  EXPECT_FALSE(base64url_decode("ab+/").has_value());
  EXPECT_FALSE(base64url_decode("abc=").has_value());
}

TEST(ReservedNames, LongAndCompanion) {
  EXPECT_TRUE(is_long_name(".Labc"));
  EXPECT_FALSE(is_long_name(".L"));
  EXPECT_FALSE(is_long_name("Labc"));
  EXPECT_TRUE(is_companion_name(".Nabc"));
  EXPECT_FALSE(is_companion_name(".Labc"));
  EXPECT_EQ(companion_of(".Labc"), ".Nabc");
}

TEST(DirIdTest, Random) { EXPECT_NE(DirId::random(), DirId::random()); }

}  // namespace
}  // namespace scratchcrypt
