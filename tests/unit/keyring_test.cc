// Kernel keyring custody: store, load, list, remove.
#include "crypto/keyring.h"

#include <gtest/gtest.h>
#include <linux/keyctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace scratchcrypt {
namespace {

bool keyring_available() {
  long r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0);
  return !(r < 0 && (errno == ENOSYS || errno == EPERM || errno == EACCES));
}

std::string unique_volume_id() {
  return "unittest-" + std::to_string(getpid()) + "-" +
         std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
         ::testing::UnitTest::GetInstance()->current_test_info()->name();
}

class KeyringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!keyring_available()) GTEST_SKIP() << "kernel keyring syscalls unavailable here";
    id_ = unique_volume_id();
  }
  void TearDown() override {
    if (!id_.empty()) keyring::remove(id_);
  }
  std::string id_;
};

TEST_F(KeyringTest, StoreLoadListRemove) {
  VolumeKey key = VolumeKey::generate();
  EXPECT_FALSE(keyring::load(id_).has_value());
  keyring::store(id_, key);

  auto loaded = keyring::load(id_);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_TRUE(std::equal(key.bytes().begin(), key.bytes().end(), loaded->bytes().begin()));
  EXPECT_EQ(loaded->check_value(), key.check_value());

  auto ids = keyring::list();
  EXPECT_NE(std::find(ids.begin(), ids.end(), id_), ids.end());

  EXPECT_TRUE(keyring::remove(id_));
  EXPECT_FALSE(keyring::load(id_).has_value());
  EXPECT_FALSE(keyring::remove(id_));
  ids = keyring::list();
  EXPECT_EQ(std::find(ids.begin(), ids.end(), id_), ids.end());
}

TEST_F(KeyringTest, StoreReplaces) {
  VolumeKey a = VolumeKey::generate();
  VolumeKey b = VolumeKey::generate();
  keyring::store(id_, a);
  keyring::store(id_, b);
  auto loaded = keyring::load(id_);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_TRUE(std::equal(b.bytes().begin(), b.bytes().end(), loaded->bytes().begin()));
  EXPECT_TRUE(keyring::remove(id_));
  EXPECT_FALSE(keyring::load(id_).has_value());
}

TEST_F(KeyringTest, VolumesAreSeparate) {
  const std::string other = id_ + "-other";
  VolumeKey a = VolumeKey::generate();
  VolumeKey b = VolumeKey::generate();
  keyring::store(id_, a);
  keyring::store(other, b);
  EXPECT_TRUE(keyring::remove(other));
  auto loaded = keyring::load(id_);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_TRUE(std::equal(a.bytes().begin(), a.bytes().end(), loaded->bytes().begin()));
  EXPECT_FALSE(keyring::load(other).has_value());
}

}  // namespace
}  // namespace scratchcrypt
