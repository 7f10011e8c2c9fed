// The FUSE requests the kernel sends for common operations, counted from a
// foreground daemon's --debug trace: what the daemon negotiates at INIT
// decides how many round trips a job's I/O costs.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string_view>

#include "tests/fs/mount_fixture.h"
#include "tests/fs/test_util.h"

namespace sctest {
namespace {

// How many requests of each opcode a trace shows (libfuse's debug lines
// read "unique: N, opcode: NAME (CODE), ...").
std::map<std::string, int> opcodes(const std::string& trace_file) {
  std::ifstream in(trace_file);
  std::map<std::string, int> counts;
  constexpr std::string_view kTag = "opcode: ";
  for (std::string line; std::getline(in, line);) {
    const size_t at = line.find(kTag);
    if (at == std::string::npos) continue;
    const size_t from = at + kTag.size();
    ++counts[line.substr(from, line.find(' ', from) - from)];
  }
  return counts;
}

// Without FUSE_HANDLE_KILLPRIV_V2 the kernel asks for security.capability
// before every write(2): two round trips per small write instead of one.
TEST(Requests, SmallWritesAreOneRoundTripEach) {
  SKIP_ON_BLOCK_LAYOUT("counts the files layout's FUSE requests");
  TempDir dir("trace");
  const std::string trace = dir.path() + "/trace.log";
  Mount m(MountOptions{{}, {}, trace});
  ASSERT_TRUE(m.ok()) << m.mount_result().output;
  constexpr int kWrites = 64;
  {
    Fd fd(::open(m.path("f").c_str(), O_WRONLY | O_CREAT, 0644));
    ASSERT_GE(fd.get(), 0) << strerror(errno);
    const std::string block(4096, 'w');
    for (int i = 0; i < kWrites; ++i) {
      ASSERT_EQ(4096, ::write(fd.get(), block.data(), block.size()));
    }
  }
  auto counts = opcodes(trace);
  EXPECT_EQ(kWrites, counts["WRITE"]);
  EXPECT_LE(counts["GETXATTR"], 1) << "the kernel asked for security.capability per write";
  EXPECT_EQ(std::string(kWrites * 4096, 'w'), read_file(m.path("f")));
}

// A block volume's image answers FSYNC with ENOSYS (its writes are stored
// when acknowledged), so the kernel stops asking: without that, every
// journal commit of the job's file system costs two FSYNC round trips (the
// loop device has no FUA, so a commit is flush, write, flush).
TEST(Requests, FsyncInABlockVolumeCostsNoRoundTrip) {
  if (!block_layout()) GTEST_SKIP() << "counts the block layout's image requests";
  TempDir dir("trace");
  const std::string trace = dir.path() + "/trace.log";
  Mount m(MountOptions{{}, {}, trace});
  ASSERT_TRUE(m.ok()) << m.mount_result().output;
  constexpr int kSyncs = 20;
  const std::string block(4096, 's');
  for (int i = 0; i < kSyncs; ++i) {
    Fd fd(::open(m.path("f" + std::to_string(i)).c_str(), O_WRONLY | O_CREAT, 0644));
    ASSERT_GE(fd.get(), 0) << strerror(errno);
    ASSERT_EQ(4096, ::write(fd.get(), block.data(), block.size()));
    ASSERT_EQ(0, ::fsync(fd.get())) << strerror(errno);
  }
  auto counts = opcodes(trace);
  EXPECT_GE(counts["WRITE"], kSyncs) << "the trace must show the image's requests";
  EXPECT_LE(counts["FSYNC"], 1) << "the kernel still sends FSYNC for the image";
  EXPECT_EQ(block, read_file(m.path("f7")));
}

}  // namespace
}  // namespace sctest
