// Thin RAII over OpenSSL's EVP cipher contexts, and a pool of keyed contexts.
//
// Setting up a context expands the AES key schedule, which costs far more
// than encrypting one 4 KiB data unit. So every cipher in scratchcrypt keys a
// context once and reuses it; only the IV/tweak changes per call. Contexts are
// not thread-safe, so a CipherPool hands each caller its own for the length
// of one request (a "lease") and takes it back afterwards.
#pragma once

#include <openssl/evp.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace scratchcrypt {

struct EvpCipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
// EVP_CIPHER_CTX_free cleanses the key schedule before freeing it.
using EvpCipherCtx = std::unique_ptr<EVP_CIPHER_CTX, EvpCipherCtxFree>;

struct EvpCipherFree {
  void operator()(EVP_CIPHER* cipher) const { EVP_CIPHER_free(cipher); }
};
using EvpCipher = std::unique_ptr<EVP_CIPHER, EvpCipherFree>;

// Fetches an algorithm by name ("AES-256-XTS"); throws if unavailable.
EvpCipher fetch_cipher(const char* name);

// Throws std::runtime_error with `what` and OpenSSL's queued error text.
[[noreturn]] void throw_openssl_error(const std::string& what);

// A pool of contexts that were all keyed by the same `make` function.
class CipherPool {
 public:
  using Factory = std::function<EvpCipherCtx()>;
  explicit CipherPool(Factory make) : make_(std::move(make)) {}

  class Lease {
   public:
    Lease(CipherPool& pool, EvpCipherCtx ctx) : pool_(pool), ctx_(std::move(ctx)) {}
    ~Lease() { pool_.give_back(std::move(ctx_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    EVP_CIPHER_CTX* get() const { return ctx_.get(); }

   private:
    CipherPool& pool_;
    EvpCipherCtx ctx_;
  };

  Lease lease();

 private:
  void give_back(EvpCipherCtx ctx);

  Factory make_;
  std::mutex mu_;
  std::vector<EvpCipherCtx> idle_;
};

}  // namespace scratchcrypt
