// Engine throughput next to `openssl speed`: one core, 4 KiB data units,
// 1 MiB per call (256 units, as the filesystem hands them over), ~2 s per
// direction. Prints both figures and the ratio; the goal is >= 90%.
//
//   build/crypto_bench [seconds]
#include <sys/time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "crypto/contents_cipher.h"
#include "crypto/volume_key.h"

using namespace scratchcrypt;
using Clock = std::chrono::steady_clock;

namespace {

// MB/s in OpenSSL's unit (1000 * 1000 bytes / s), so the figures compare.
double run(ContentsCipher& engine, bool encrypting, double seconds) {
  constexpr size_t kBuffer = 1 << 20;
  std::vector<uint8_t> in(kBuffer), out(kBuffer);
  for (size_t i = 0; i < kBuffer; ++i) in[i] = static_cast<uint8_t>(i * 7 + 1);
  const FileId file = FileId::random();
  if (!encrypting) engine.encrypt(file, 0, in, in);  // decrypt real ciphertext, not holes
  uint64_t bytes = 0, unit = 0;
  const auto start = Clock::now();
  auto now = start;
  do {
    for (int i = 0; i < 16; ++i) {
      if (encrypting) {
        engine.encrypt(file, unit, in, out);
      } else {
        engine.decrypt(file, unit, in, out);
      }
      unit += kBuffer / kDataUnitBytes;
      bytes += kBuffer;
    }
    now = Clock::now();
  } while (std::chrono::duration<double>(now - start).count() < seconds);
  const double elapsed = std::chrono::duration<double>(now - start).count();
  volatile uint8_t sink = out[12345];
  (void)sink;
  return static_cast<double>(bytes) / elapsed / 1e6;
}

// Runs `openssl speed -evp aes-256-xts -bytes 4096 -seconds N` and returns
// its 4096-byte figure in MB/s (it prints kB/s, k = 1000), or a negative
// number if it could not be run or parsed.
double openssl_speed(int seconds, bool decrypt) {
  std::string cmd = "openssl speed -evp aes-256-xts -bytes 4096 -seconds " +
                    std::to_string(seconds) + (decrypt ? " -decrypt" : "") + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char line[1024];
  double kbs = -1;
  while (fgets(line, sizeof line, p)) {
    // "AES-256-XTS  <figure>k" is the results line.
    const char* at = strcasestr(line, "aes-256-xts");
    if (!at || std::strstr(line, "Doing")) continue;
    at += std::strlen("aes-256-xts");
    char* end = nullptr;
    double v = std::strtod(at, &end);
    if (end != at) kbs = v;
  }
  pclose(p);
  return kbs < 0 ? kbs : kbs / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  VolumeKey key = VolumeKey::generate();
  ContentsCipher engine(key);

  const double enc = run(engine, true, seconds);
  const double dec = run(engine, false, seconds);
  const int os = seconds < 1 ? 1 : static_cast<int>(seconds + 0.5);
  const double ssl_enc = openssl_speed(os, false);
  const double ssl_dec = openssl_speed(os, true);

  std::printf("scratchcrypt engine, AES-256-XTS, 4096-byte units, 1 MiB per call, 1 core\n");
  std::printf("  %-8s %12s %14s %8s\n", "", "engine MB/s", "openssl MB/s", "ratio");
  auto row = [](const char* what, double ours, double theirs) {
    if (theirs > 0) {
      std::printf("  %-8s %12.1f %14.1f %7.1f%%\n", what, ours, theirs, 100.0 * ours / theirs);
    } else {
      std::printf("  %-8s %12.1f %14s %8s\n", what, ours, "n/a", "n/a");
    }
  };
  row("encrypt", enc, ssl_enc);
  row("decrypt", dec, ssl_dec);
  std::printf("(MB = 10^6 bytes, as `openssl speed -evp aes-256-xts -bytes 4096` reports)\n");
  if (ssl_enc > 0 && enc < 0.9 * ssl_enc) {
    std::printf("below the 90%% goal for encryption\n");
  }
  return 0;
}
