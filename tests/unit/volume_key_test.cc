// VolumeKey: generation, fd hand-over, KDF, destruction.
#include "crypto/volume_key.h"

#include <gtest/gtest.h>
#include <sodium.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace scratchcrypt {
namespace {

std::vector<uint8_t> counting(size_t n, uint8_t start = 0) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(start + i);
  return v;
}

std::vector<uint8_t> vec(const SecureBuffer& b) { return {b.data(), b.data() + b.size()}; }

bool all_zero(std::span<const uint8_t> s) {
  for (uint8_t b : s) {
    if (b != 0) return false;
  }
  return true;
}

TEST(VolumeKey, GenerateIsRandomAndFullSize) {
  VolumeKey a = VolumeKey::generate();
  VolumeKey b = VolumeKey::generate();
  EXPECT_EQ(a.bytes().size(), kVolumeKeyBytes);
  EXPECT_FALSE(a.destroyed());
  EXPECT_FALSE(std::equal(a.bytes().begin(), a.bytes().end(), b.bytes().begin()));
}

TEST(VolumeKey, FromBytesChecksSize) {
  EXPECT_NO_THROW(VolumeKey::from_bytes(counting(64)));
  EXPECT_THROW(VolumeKey::from_bytes(counting(63)), std::runtime_error);
  EXPECT_THROW(VolumeKey::from_bytes(counting(65)), std::runtime_error);
  VolumeKey k = VolumeKey::from_bytes(counting(64));
  EXPECT_TRUE(std::equal(k.bytes().begin(), k.bytes().end(), counting(64).begin()));
}

// The documented KDF, recomputed with libsodium's BLAKE2b directly.
TEST(VolumeKey, DeriveIsKeyedBlake2bOfPurpose) {
  const auto raw = counting(64);
  VolumeKey k = VolumeKey::from_bytes(raw);
  for (auto [purpose, n] : {std::pair<std::string_view, size_t>{purpose::kContents, 64},
                            {purpose::kTail, 32},
                            {purpose::kNames, 64},
                            {purpose::kKeyCheck, 16}}) {
    const std::string msg = "scratchcrypt/v1/" + std::string(purpose);
    std::vector<uint8_t> want(n);
    ASSERT_EQ(0, crypto_generichash(want.data(), n, reinterpret_cast<const uint8_t*>(msg.data()),
                                    msg.size(), raw.data(), raw.size()));
    EXPECT_EQ(vec(k.derive(purpose, n)), want) << purpose;
  }
}

TEST(VolumeKey, SubkeysDifferPerPurposeAndAreDeterministic) {
  VolumeKey k = VolumeKey::from_bytes(counting(64));
  auto contents = vec(k.derive(purpose::kContents, 64));
  auto names = vec(k.derive(purpose::kNames, 64));
  auto tail = vec(k.derive(purpose::kTail, 32));
  auto check = vec(k.derive(purpose::kKeyCheck, 32));
  EXPECT_NE(contents, names);
  EXPECT_NE(std::vector<uint8_t>(contents.begin(), contents.begin() + 32), tail);
  EXPECT_NE(tail, check);
  EXPECT_EQ(contents, vec(k.derive(purpose::kContents, 64)));
  // A different length is a different BLAKE2b output, not a prefix.
  auto c32 = vec(k.derive(purpose::kContents, 32));
  EXPECT_NE(c32, std::vector<uint8_t>(contents.begin(), contents.begin() + 32));
  // Same bytes, another object: same subkeys. Another key: different.
  VolumeKey same = VolumeKey::from_bytes(counting(64));
  EXPECT_EQ(vec(same.derive(purpose::kContents, 64)), contents);
  VolumeKey other = VolumeKey::from_bytes(counting(64, 1));
  EXPECT_NE(vec(other.derive(purpose::kContents, 64)), contents);
  // The two XTS halves differ (OpenSSL refuses equal halves).
  EXPECT_FALSE(std::equal(contents.begin(), contents.begin() + 32, contents.begin() + 32));
}

TEST(VolumeKey, DeriveLengthLimits) {
  VolumeKey k = VolumeKey::generate();
  EXPECT_THROW(k.derive("x", 15), std::invalid_argument);
  EXPECT_THROW(k.derive("x", 65), std::invalid_argument);
  EXPECT_EQ(k.derive("x", 16).size(), 16u);
  EXPECT_EQ(k.derive("x", 64).size(), 64u);
}

TEST(VolumeKey, CheckValueIsTheKeyCheckSubkey) {
  VolumeKey k = VolumeKey::from_bytes(counting(64));
  auto check = k.check_value();
  EXPECT_EQ(std::vector<uint8_t>(check.begin(), check.end()),
            vec(k.derive(purpose::kKeyCheck, kKeyCheckBytes)));
  VolumeKey other = VolumeKey::from_bytes(counting(64, 1));
  EXPECT_NE(other.check_value(), check);
}

TEST(VolumeKey, ReadFromPipe) {
  int fds[2];
  ASSERT_EQ(0, pipe(fds));
  const auto raw = counting(64, 0x40);
  // Two writes: read_from_fd must loop over short reads.
  ASSERT_EQ(20, write(fds[1], raw.data(), 20));
  ASSERT_EQ(44, write(fds[1], raw.data() + 20, 44));
  close(fds[1]);
  VolumeKey k = VolumeKey::read_from_fd(fds[0]);
  close(fds[0]);
  EXPECT_TRUE(std::equal(k.bytes().begin(), k.bytes().end(), raw.begin()));
}

TEST(VolumeKey, ReadFromPipeWith63BytesThrows) {
  int fds[2];
  ASSERT_EQ(0, pipe(fds));
  const auto raw = counting(63);
  ASSERT_EQ(63, write(fds[1], raw.data(), raw.size()));
  close(fds[1]);
  EXPECT_THROW(VolumeKey::read_from_fd(fds[0]), std::runtime_error);
  close(fds[0]);
}

TEST(VolumeKey, ReadFromBadFdThrows) {
  EXPECT_THROW(VolumeKey::read_from_fd(-1), std::runtime_error);
}

TEST(VolumeKey, DestroyZeroizesAndBlocksDerive) {
  VolumeKey k = VolumeKey::generate();
  ASSERT_FALSE(all_zero(k.bytes()));
  const uint8_t* where = k.bytes().data();
  k.destroy();
  EXPECT_TRUE(k.destroyed());
  EXPECT_TRUE(all_zero(k.bytes()));
  EXPECT_EQ(k.bytes().data(), where) << "zeroized in place, not reallocated";
  EXPECT_EQ(k.bytes().size(), kVolumeKeyBytes);
  EXPECT_THROW(k.derive(purpose::kContents, 64), std::logic_error);
  EXPECT_THROW(k.check_value(), std::logic_error);
  k.destroy();  // idempotent
  EXPECT_TRUE(k.destroyed());
}

TEST(VolumeKey, MovedFromKeyIsEmpty) {
  VolumeKey a = VolumeKey::generate();
  VolumeKey b = std::move(a);
  EXPECT_FALSE(b.destroyed());
  EXPECT_TRUE(a.destroyed());  // NOLINT(bugprone-use-after-move): the moved-from state is defined
  EXPECT_THROW(a.derive(purpose::kContents, 64), std::logic_error);
}

}  // namespace
}  // namespace scratchcrypt
