// Node mode (mode = node): one volume at node_mount for an exclusive node,
// replaced by a freshly keyed one at each job start and wiped at job end.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "tests/lifecycle/lifecycle_util.h"

namespace lctest {
namespace {

using namespace std::chrono_literals;

// Run once per layout (the parameter), set in the configuration.
class NodeModeTest : public NodeTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (GetParam() == "block" && !exists("/dev/loop-control")) {
      GTEST_SKIP() << "no loop devices here (/dev/loop-control)";
    }
    node_mount_ = mount_root_ + "/node";
    ASSERT_TRUE(spit(config_, slurp(config_) + "mode = node\nnode_mount = " + node_mount_ +
                                  "\nlayout = " + GetParam() + "\nsize_limit = 1G\n"));
  }

  std::string volume_id() {
    std::istringstream in(slurp(backing_root_ + "/node/.scratchcrypt-volume"));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("id ", 0) == 0) return line.substr(3);
    }
    return "";
  }

  // Runs the prologue of `job` for `uid` and checks the node volume is theirs.
  std::string start_job(const std::string& job, uid_t uid) {
    RunResult r = sc({"prologue", "--job", job, "--uid", std::to_string(uid), "--gid",
                      std::to_string(uid)});
    EXPECT_EQ(0, r.exit_code) << r.output;
    EXPECT_TRUE(contains(r.output, "SCRATCH=" + node_mount_)) << r.output;
    EXPECT_TRUE(is_mountpoint(node_mount_));
    struct stat st;
    EXPECT_EQ(0, ::stat(node_mount_.c_str(), &st)) << std::strerror(errno);
    EXPECT_EQ(uid, st.st_uid);
    EXPECT_EQ(0700u, st.st_mode & 07777);
    const std::string id = volume_id();
    EXPECT_EQ(32u, id.size());
    track(id);
    auto status = status_of(id);
    EXPECT_TRUE(status && status->str("layout") == GetParam())
        << "the node volume's layout is not " << GetParam();
    return id;
  }

  std::string node_mount_;
};

TEST_P(NodeModeTest, EachJobGetsAFreshlyKeyedVolumeAndTheLastOneIsWiped) {
  const std::string first = start_job("101", sctest::kUserA);
  auto wrote = sctest::as_user(sctest::kUserA, sctest::kUserA, [&]() -> long {
    int fd = ::open((node_mount_ + "/left-by-job-101").c_str(), O_WRONLY | O_CREAT, 0600);
    if (fd < 0) return -1;
    long n = ::write(fd, "first job's data", 16);
    ::close(fd);
    return n;
  });
  ASSERT_EQ(16, wrote.value) << std::strerror(wrote.err);
  const std::string first_key = hex(key_bytes(first));
  ASSERT_FALSE(first_key.empty());

  // The next job's prologue ends the previous volume first, even though the
  // previous epilogue never ran (a requeue, a lost epilogue).
  const std::string second = start_job("102", sctest::kUserB);
  EXPECT_NE(first, second);
  EXPECT_NE(first_key, hex(key_bytes(second))) << "the node volume was not re-keyed";
  EXPECT_EQ(-1, key_serial(first)) << "the first job's key is still in the keyring";
  EXPECT_FALSE(exists(node_mount_ + "/left-by-job-101")) << "the second job sees the first job's file";
  auto old = wait_record(first, 30s);
  ASSERT_TRUE(old.has_value()) << "no record for the replaced volume";
  EXPECT_EQ("101", old->str("job"));
  EXPECT_EQ("complete", old->str("outcome"));

  RunResult end = sc({"epilogue", "--job", "102"});
  EXPECT_EQ(0, end.exit_code) << end.output;
  EXPECT_FALSE(is_mountpoint(node_mount_));
  EXPECT_EQ(-1, key_serial(second));
  auto last = wait_record(second, 30s);
  ASSERT_TRUE(last.has_value()) << "no record for the last volume";
  EXPECT_EQ("102", last->str("job"));
  EXPECT_FALSE(exists(backing_root_ + "/node/.scratchcrypt-volume"));
}

INSTANTIATE_TEST_SUITE_P(Layout, NodeModeTest, ::testing::Values("block", "files"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace lctest
