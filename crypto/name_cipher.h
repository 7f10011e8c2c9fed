// NameCipher: encrypts file names, symlink targets and extended attributes
// with AES-256-SIV (RFC 5297, deterministic authenticated encryption).
//
// Format (docs/FORMAT.md, "Names"):
//  * name ciphertext = SIV(names subkey, AD = ["name", directory id], name);
//    deterministic within one directory, different across directories, and
//    authenticated: a corrupted backing name fails to decrypt and is skipped.
//  * backing name = base64url(ciphertext) without padding, if that is at most
//    255 bytes (plaintext names up to 175 bytes); otherwise the long form
//    ".L" + base64url(BLAKE2b-256(base64 text)), whose full text is kept in a
//    companion file ".N" + same hash in the same directory.
//  * symlink target: a random 16-byte nonce n, stored as
//    base64url(n || SIV(AD = ["symlink", n], target)) (where that text is
//    kept is the filesystem's business: fuse/encrypted_directory.h).
//  * xattr name: "user.scratchcrypt.x." + base64url(SIV(AD = ["xattr-name"], name)),
//    value: SIV(AD = ["xattr-value", object id, name], 0x01 || value).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/evp.h"
#include "crypto/volume_key.h"

namespace scratchcrypt {

inline constexpr size_t kMaxNameBytes = 255;
inline constexpr size_t kSivTagBytes = 16;

struct DirId {
  std::array<uint8_t, 16> bytes{};
  static DirId random();
  bool operator==(const DirId&) const = default;
};

// What a name looks like on the backing store.
struct BackingName {
  std::string name;       // the directory entry on the backing store
  std::string long_text;  // for the long form: the companion file's content
  bool is_long() const { return !long_text.empty(); }
};

// Backing names that scratchcrypt reserves; never produced for a user name.
bool is_long_name(std::string_view backing_name);
bool is_companion_name(std::string_view backing_name);
// The companion file of a long backing name (".L<hash>" -> ".N<hash>").
std::string companion_of(std::string_view long_backing_name);
// base64url(BLAKE2b-256(text)): names the companion of a long name or of a
// long symlink target by its content.
std::string text_hash(std::string_view text);

std::string base64url_encode(std::span<const uint8_t> bytes);
std::optional<std::vector<uint8_t>> base64url_decode(std::string_view text);

class NameCipher {
 public:
  explicit NameCipher(const VolumeKey& key);

  // `name` is a valid POSIX name component: 1..255 bytes, no '/' or NUL.
  BackingName encrypt_name(const DirId& dir, std::string_view name);
  // Decrypts a short backing name, or the companion text of a long one.
  // nullopt when it does not authenticate (corrupted or foreign).
  std::optional<std::string> decrypt_name(const DirId& dir, std::string_view text);

  std::string encrypt_symlink(std::string_view target);
  std::optional<std::string> decrypt_symlink(std::string_view stored);

  std::string encrypt_xattr_name(std::string_view name);
  std::optional<std::string> decrypt_xattr_name(std::string_view stored);
  std::vector<uint8_t> encrypt_xattr_value(std::span<const uint8_t> object_id,
                                           std::string_view name,
                                           std::span<const uint8_t> value);
  std::optional<std::vector<uint8_t>> decrypt_xattr_value(
      std::span<const uint8_t> object_id, std::string_view name,
      std::span<const uint8_t> stored);

  // Raw SIV with a list of associated-data components.
  std::vector<uint8_t> seal(std::initializer_list<std::span<const uint8_t>> ad,
                            std::span<const uint8_t> plaintext);
  std::optional<std::vector<uint8_t>> open(
      std::initializer_list<std::span<const uint8_t>> ad,
      std::span<const uint8_t> ciphertext);

 private:
  void rekey(EVP_CIPHER_CTX* ctx, int encrypting);

  EvpCipher siv_;
  SecureBuffer key_;
  CipherPool pool_;
};

inline constexpr std::string_view kXattrPrefix = "user.scratchcrypt.x.";

}  // namespace scratchcrypt
