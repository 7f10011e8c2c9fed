// ContentsCipher: encrypts file contents as a block device would, one fixed
// data unit at a time, with AES-256-XTS through OpenSSL EVP (AES-NI/VAES).
//
// The format (docs/FORMAT.md, "File contents"):
//  * A file is a sequence of 4096-byte data units; unit i covers bytes
//    [i*4096, (i+1)*4096). Ciphertext has exactly the length of plaintext.
//  * Tweak of unit i of a file = file id XOR (LE64(i) || 0^8), the file id
//    being 16 random bytes kept with the file: distinct for every (file,
//    unit) of a volume unless two random ids come within 2^64 units of
//    each other (format version 2; docs/FORMAT.md gives the bound).
//  * A unit of 16 bytes or more (the last one may be any length) is
//    AES-256-XTS with the "contents" subkey; tails not a multiple of 16 use
//    XTS ciphertext stealing.
//  * A last unit of 1..15 bytes, too short for XTS, is XORed with
//    AES-256-ECB(tail subkey, tweak): a key stream fixed per (file, unit).
//    Neither OpenSSL nor libsodium offers a cipher for fewer than 16 bytes,
//    and we write no primitive ourselves; docs/FORMAT.md 4.1 says what this
//    leaks (the XOR of two versions of such a tail).
//  * A stored unit of 16 bytes or more that is all zeros is a hole and reads
//    as zeros, so sparse backing files stay sparse.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "crypto/evp.h"
#include "crypto/volume_key.h"

namespace scratchcrypt {

inline constexpr size_t kDataUnitBytes = 4096;
inline constexpr size_t kXtsMinBytes = 16;

struct FileId {
  std::array<uint8_t, 16> bytes{};
  static FileId random();
  bool operator==(const FileId&) const = default;
};

// True when every byte is zero; the hole test.
bool is_all_zero(const uint8_t* data, size_t length);

class ContentsCipher {
 public:
  explicit ContentsCipher(const VolumeKey& key);

  // Test seam: an engine keyed directly with a raw 64-byte AES-256-XTS key
  // (key1 || key2) and a raw 32-byte tail key, bypassing the KDF, so that
  // standard vectors (IEEE 1619) can be run through encrypt()/decrypt().
  // Never used by the filesystem.
  static std::unique_ptr<ContentsCipher> for_testing(std::span<const uint8_t> xts_key,
                                                     std::span<const uint8_t> tail_key);

  // Encrypts consecutive data units of one file, starting at unit
  // `first_unit`. `in` holds whole units except that the final one may be
  // shorter (it is then the file's last unit). `out` has in's size and may
  // alias it.
  void encrypt(const FileId& file, uint64_t first_unit,
               std::span<const uint8_t> in, std::span<uint8_t> out);

  // The inverse. Stored units of >= 16 bytes that are all zeros decrypt to
  // zeros (holes).
  void decrypt(const FileId& file, uint64_t first_unit,
               std::span<const uint8_t> in, std::span<uint8_t> out);

 private:
  ContentsCipher(std::shared_ptr<const SecureBuffer> xts_key,
                 std::shared_ptr<const SecureBuffer> tail_key);
  void crypt(bool encrypting, const FileId& file, uint64_t first_unit,
             std::span<const uint8_t> in, std::span<uint8_t> out);
  void crypt_short_tail(const std::array<uint8_t, 16>& tweak, const uint8_t* in, uint8_t* out,
                        size_t length);

  EvpCipher xts_;
  EvpCipher ecb_;
  CipherPool encrypt_pool_;
  CipherPool decrypt_pool_;
  CipherPool tail_pool_;
};

}  // namespace scratchcrypt
