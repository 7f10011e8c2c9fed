// SecureBuffer: a fixed-size byte buffer for key material.
//
// Backed by libsodium's sodium_malloc: the pages are mlock()ed (never swapped),
// excluded from core dumps, surrounded by guard pages, and zeroed by
// sodium_free. Move-only, so exactly one owner frees it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace scratchcrypt {

// Initializes libsodium once; throws if it cannot. Safe to call repeatedly.
void ensure_sodium();

class SecureBuffer {
 public:
  explicit SecureBuffer(size_t size);
  ~SecureBuffer();
  SecureBuffer(SecureBuffer&& other) noexcept;
  SecureBuffer& operator=(SecureBuffer&& other) noexcept;
  SecureBuffer(const SecureBuffer&) = delete;
  SecureBuffer& operator=(const SecureBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }

  // Overwrites the contents with zeros; the buffer stays allocated.
  void zeroize();
  // True when every byte is zero (used to verify destruction).
  bool is_zero() const;

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace scratchcrypt
