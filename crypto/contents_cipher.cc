#include "crypto/contents_cipher.h"

#include <sodium.h>

#include <cstring>
#include <stdexcept>

namespace scratchcrypt {

namespace {

constexpr size_t kXtsKeyBytes = 64;
constexpr size_t kTailKeyBytes = 32;

std::array<uint8_t, 16> make_tweak(const FileId& file, uint64_t unit) {
  std::array<uint8_t, 16> tweak = file.bytes;
  for (int i = 0; i < 8; ++i) tweak[i] ^= static_cast<uint8_t>(unit >> (8 * i));
  return tweak;
}

// Keys a fresh context. The key schedule is copied into OpenSSL's context, so
// the SecureBuffer holding the subkey can be dropped right after.
EvpCipherCtx keyed_context(const EVP_CIPHER* cipher, const SecureBuffer& key,
                           int encrypting) {
  EvpCipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_CipherInit_ex2(ctx.get(), cipher, key.data(), nullptr,
                                 encrypting, nullptr) != 1) {
    throw_openssl_error("cannot key the contents cipher");
  }
  EVP_CIPHER_CTX_set_padding(ctx.get(), 0);
  return ctx;
}

}  // namespace

FileId FileId::random() {
  ensure_sodium();
  FileId id;
  randombytes_buf(id.bytes.data(), id.bytes.size());
  return id;
}

bool is_all_zero(const uint8_t* data, size_t length) {
  // Word-at-a-time scan; holes are common and this sits on the read path.
  size_t i = 0;
  for (; i + 8 <= length; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, 8);
    if (word != 0) return false;
  }
  for (; i < length; ++i) {
    if (data[i] != 0) return false;
  }
  return true;
}

ContentsCipher::ContentsCipher(const VolumeKey& key)
    : ContentsCipher(
          std::make_shared<SecureBuffer>(key.derive(purpose::kContents, kXtsKeyBytes)),
          std::make_shared<SecureBuffer>(key.derive(purpose::kTail, kTailKeyBytes))) {}

// The subkeys stay in locked memory for as long as the pools may key new
// contexts (one per concurrent request), and are zeroed with the cipher.
ContentsCipher::ContentsCipher(std::shared_ptr<const SecureBuffer> xts_key,
                               std::shared_ptr<const SecureBuffer> tail_key)
    : xts_(fetch_cipher("AES-256-XTS")),
      ecb_(fetch_cipher("AES-256-ECB")),
      encrypt_pool_([this, xts_key] { return keyed_context(xts_.get(), *xts_key, 1); }),
      decrypt_pool_([this, xts_key] { return keyed_context(xts_.get(), *xts_key, 0); }),
      tail_pool_([this, tail_key] { return keyed_context(ecb_.get(), *tail_key, 1); }) {
  // Key one context of each kind now, so that a bad key (for instance equal
  // XTS halves, which OpenSSL refuses) fails at mount and not on first I/O.
  { auto probe = encrypt_pool_.lease(); }
  { auto probe = decrypt_pool_.lease(); }
  { auto probe = tail_pool_.lease(); }
}

std::unique_ptr<ContentsCipher> ContentsCipher::for_testing(
    std::span<const uint8_t> xts_key, std::span<const uint8_t> tail_key) {
  if (xts_key.size() != kXtsKeyBytes || tail_key.size() != kTailKeyBytes) {
    throw std::invalid_argument("for_testing: keys must be 64 and 32 bytes");
  }
  auto xts = std::make_shared<SecureBuffer>(kXtsKeyBytes);
  std::memcpy(xts->data(), xts_key.data(), kXtsKeyBytes);
  auto tail = std::make_shared<SecureBuffer>(kTailKeyBytes);
  std::memcpy(tail->data(), tail_key.data(), kTailKeyBytes);
  return std::unique_ptr<ContentsCipher>(new ContentsCipher(std::move(xts), std::move(tail)));
}

void ContentsCipher::encrypt(const FileId& file, uint64_t first_unit,
                             std::span<const uint8_t> in, std::span<uint8_t> out) {
  crypt(true, file, first_unit, in, out);
}

void ContentsCipher::decrypt(const FileId& file, uint64_t first_unit,
                             std::span<const uint8_t> in, std::span<uint8_t> out) {
  crypt(false, file, first_unit, in, out);
}

void ContentsCipher::crypt(bool encrypting, const FileId& file, uint64_t first_unit,
                           std::span<const uint8_t> in, std::span<uint8_t> out) {
  if (out.size() != in.size()) throw std::invalid_argument("buffer size mismatch");
  auto lease = encrypting ? encrypt_pool_.lease() : decrypt_pool_.lease();
  EVP_CIPHER_CTX* ctx = lease.get();

  uint64_t unit = first_unit;
  for (size_t offset = 0; offset < in.size(); offset += kDataUnitBytes, ++unit) {
    const size_t length = std::min(kDataUnitBytes, in.size() - offset);
    const uint8_t* src = in.data() + offset;
    uint8_t* dst = out.data() + offset;
    const auto tweak = make_tweak(file, unit);

    if (length < kXtsMinBytes) {
      crypt_short_tail(tweak, src, dst, length);
      continue;
    }
    if (!encrypting && is_all_zero(src, length)) {
      std::memset(dst, 0, length);  // a hole
      continue;
    }
    // Only the tweak changes: no key schedule per unit.
    int written = 0;
    if (EVP_CipherInit_ex2(ctx, nullptr, nullptr, tweak.data(), -1, nullptr) != 1 ||
        EVP_CipherUpdate(ctx, dst, &written, src, static_cast<int>(length)) != 1 ||
        static_cast<size_t>(written) != length) {
      throw_openssl_error("AES-XTS failed on a data unit");
    }
  }
}

// XOR with AES-256-ECB(tail subkey, tweak): its own inverse. A key stream
// fixed per (file, unit); docs/FORMAT.md section 4.1 says why, and what it
// leaks.
void ContentsCipher::crypt_short_tail(const std::array<uint8_t, 16>& tweak, const uint8_t* in,
                                      uint8_t* out, size_t length) {
  auto lease = tail_pool_.lease();
  uint8_t stream[16];
  int written = 0;
  if (EVP_CipherUpdate(lease.get(), stream, &written, tweak.data(), 16) != 1 || written != 16) {
    throw_openssl_error("AES failed on a short tail");
  }
  for (size_t i = 0; i < length; ++i) out[i] = in[i] ^ stream[i];
  sodium_memzero(stream, sizeof stream);
}

}  // namespace scratchcrypt
