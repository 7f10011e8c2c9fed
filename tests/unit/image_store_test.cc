// ImageStore: the block layout's sector store against a plain in-memory
// model: aligned and unaligned writes, reads across sector edges, punching
// (whole and partial sectors), the image end, and the stored form (holes
// stay zero, written sectors never do, even when the plaintext is zeros).
#include "fuse/image_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>
#include <string>
#include <vector>

namespace scratchcrypt {
namespace {

constexpr uint64_t kSize = 64 * kSectorBytes;

class ImageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/sc-image-store-XXXXXX";
    ASSERT_NE(nullptr, ::mkdtemp(dir));
    dir_ = dir;
    UniqueFd dir_fd(::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    bool direct = false;
    UniqueFd image = create_backing_image(dir_fd.get(), kSize, &direct);
    std::vector<uint8_t> key_bytes(64);
    for (size_t i = 0; i < key_bytes.size(); ++i) key_bytes[i] = static_cast<uint8_t>(i * 13 + 1);
    int p[2];
    ASSERT_EQ(0, ::pipe(p));
    ASSERT_EQ(64, ::write(p[1], key_bytes.data(), 64));
    ::close(p[1]);
    key_ = std::make_unique<VolumeKey>(VolumeKey::read_from_fd(p[0]));
    ::close(p[0]);
    cipher_ = std::make_unique<ContentsCipher>(*key_);
    store_ = std::make_unique<ImageStore>(std::move(image), direct, kSize, *cipher_);
    model_.assign(kSize, 0);
  }
  void TearDown() override {
    store_.reset();
    ::unlink((dir_ + "/" + kImageFileName).c_str());
    ::rmdir(dir_.c_str());
  }
  void write(uint64_t at, const std::vector<uint8_t>& data) {
    ASSERT_EQ(static_cast<ssize_t>(data.size()), store_->write(at, data));
    std::copy(data.begin(), data.end(), model_.begin() + static_cast<long>(at));
  }
  void expect_matches_model() {
    std::vector<uint8_t> all(kSize + 100);
    ASSERT_EQ(static_cast<ssize_t>(kSize), store_->read(0, all));
    all.resize(kSize);
    EXPECT_TRUE(all == model_);
  }
  std::vector<uint8_t> stored(uint64_t sector) {
    std::vector<uint8_t> raw(kSectorBytes);
    UniqueFd fd(::open((dir_ + "/" + kImageFileName).c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(static_cast<ssize_t>(kSectorBytes),
              ::pread(fd.get(), raw.data(), raw.size(), static_cast<off_t>(sector * kSectorBytes)));
    return raw;
  }

  std::string dir_;
  std::unique_ptr<VolumeKey> key_;
  std::unique_ptr<ContentsCipher> cipher_;
  std::unique_ptr<ImageStore> store_;
  std::vector<uint8_t> model_;
};

bool all_zero(const std::vector<uint8_t>& v) {
  return std::all_of(v.begin(), v.end(), [](uint8_t b) { return b == 0; });
}

TEST_F(ImageStoreTest, StartsAsHolesAndWrittenSectorsAreNeverZero) {
  expect_matches_model();
  EXPECT_TRUE(all_zero(stored(3)));
  write(3 * kSectorBytes, std::vector<uint8_t>(kSectorBytes, 0));  // zeros, encrypted
  EXPECT_FALSE(all_zero(stored(3)));
  write(5 * kSectorBytes, std::vector<uint8_t>(kSectorBytes, 'A'));
  write(6 * kSectorBytes, std::vector<uint8_t>(kSectorBytes, 'A'));
  EXPECT_NE(stored(5), stored(6)) << "the tweak must differ per sector";
  expect_matches_model();
}

TEST_F(ImageStoreTest, RandomUnalignedWritesReadsAndPunchesMatchAModel) {
  std::mt19937_64 rng(20261201);
  for (int op = 0; op < 400; ++op) {
    const uint64_t at = rng() % kSize;
    const uint64_t length = 1 + rng() % std::min<uint64_t>(kSize - at, 5 * kSectorBytes);
    switch (rng() % 3) {
      case 0: {
        std::vector<uint8_t> data(length);
        for (auto& b : data) b = static_cast<uint8_t>(rng());
        write(at, data);
        break;
      }
      case 1: {
        ASSERT_EQ(0, store_->punch(at, length));
        std::fill(model_.begin() + static_cast<long>(at), model_.begin() + static_cast<long>(at + length), 0);
        break;
      }
      default: {
        std::vector<uint8_t> out(length);
        ASSERT_EQ(static_cast<ssize_t>(length), store_->read(at, out));
        ASSERT_TRUE(std::equal(out.begin(), out.end(), model_.begin() + static_cast<long>(at))) << "op " << op;
      }
    }
  }
  expect_matches_model();
}

TEST_F(ImageStoreTest, ReadInPlaceMatchesTheModelAndStopsAtTheImageEnd) {
  std::mt19937_64 rng(20261202);
  for (int i = 0; i < 40; ++i) {
    std::vector<uint8_t> data(1 + rng() % (3 * kSectorBytes));
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    write(rng() % (kSize - data.size()), data);
  }
  for (int i = 0; i < 200; ++i) {
    const uint64_t at = rng() % kSize;
    const size_t length = 1 + rng() % (kSize / 2);
    const uint8_t* data = nullptr;
    const ssize_t n = store_->read_in_place(at, length, &data);
    ASSERT_EQ(static_cast<ssize_t>(std::min<uint64_t>(length, kSize - at)), n);
    ASSERT_TRUE(std::equal(data, data + n, model_.begin() + static_cast<long>(at))) << "read " << i;
  }
  const uint8_t* data = nullptr;
  EXPECT_EQ(0, store_->read_in_place(kSize, 10, &data));
}

TEST_F(ImageStoreTest, PunchFreesWholeSectorsAndTheImageEndHolds) {
  write(0, std::vector<uint8_t>(8 * kSectorBytes, 'x'));
  ASSERT_EQ(0, store_->punch(kSectorBytes + 100, 4 * kSectorBytes));
  std::fill(model_.begin() + kSectorBytes + 100, model_.begin() + 5 * kSectorBytes + 100, 0);
  EXPECT_TRUE(all_zero(stored(2)));  // whole sectors: holes again
  EXPECT_TRUE(all_zero(stored(4)));
  EXPECT_FALSE(all_zero(stored(1)));  // partial: rewritten, encrypted
  EXPECT_FALSE(all_zero(stored(5)));
  expect_matches_model();
  std::vector<uint8_t> one(1, 'z');
  EXPECT_EQ(-ENOSPC, store_->write(kSize, one));
  EXPECT_EQ(-ENOSPC, store_->write(kSize - 1, std::vector<uint8_t>(2, 'z')));
  EXPECT_EQ(0, store_->read(kSize, one));
}

}  // namespace
}  // namespace scratchcrypt
