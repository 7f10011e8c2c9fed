// SecureBuffer: locked key memory that is zeroed and movable, never copied.
#include "crypto/secure_buffer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <type_traits>

namespace scratchcrypt {
namespace {

static_assert(!std::is_copy_constructible_v<SecureBuffer>);
static_assert(!std::is_copy_assignable_v<SecureBuffer>);
static_assert(std::is_nothrow_move_constructible_v<SecureBuffer>);

TEST(SecureBuffer, StartsZeroed) {
  SecureBuffer b(64);
  EXPECT_EQ(b.size(), 64u);
  EXPECT_TRUE(b.is_zero());
  EXPECT_EQ(b.bytes().size(), 64u);
}

TEST(SecureBuffer, ZeroizeInPlace) {
  SecureBuffer b(48);
  std::memset(b.data(), 0xa5, b.size());
  EXPECT_FALSE(b.is_zero());
  uint8_t* where = b.data();
  b.zeroize();
  EXPECT_TRUE(b.is_zero());
  EXPECT_EQ(b.data(), where);
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b.data()[i], 0) << i;
}

TEST(SecureBuffer, OneNonZeroByteIsNotZero) {
  SecureBuffer b(33);
  b.data()[32] = 1;
  EXPECT_FALSE(b.is_zero());
}

TEST(SecureBuffer, MoveTransfersOwnership) {
  SecureBuffer a(16);
  std::memset(a.data(), 7, 16);
  uint8_t* where = a.data();
  SecureBuffer b(std::move(a));
  EXPECT_EQ(b.data(), where);
  EXPECT_EQ(b.size(), 16u);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(a.size(), 0u);
  EXPECT_TRUE(a.is_zero());
  a.zeroize();  // harmless on the moved-from buffer
  SecureBuffer c(8);
  c = std::move(b);
  EXPECT_EQ(c.data(), where);
  EXPECT_EQ(c.data()[15], 7);
  c = std::move(c);  // self-move keeps the contents
  EXPECT_EQ(c.data(), where);
}

TEST(SecureBuffer, ZeroSize) {
  SecureBuffer b(0);
  EXPECT_EQ(b.size(), 0u);
  EXPECT_TRUE(b.is_zero());
}

TEST(SecureBuffer, EnsureSodiumIsRepeatable) {
  EXPECT_NO_THROW(ensure_sodium());
  EXPECT_NO_THROW(ensure_sodium());
}

}  // namespace
}  // namespace scratchcrypt
