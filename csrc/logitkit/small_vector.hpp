// A vector that keeps its first N elements inside the object and goes to the heap only
// beyond them: for the per-call bookkeeping (shapes, strides, axis plans) of arrays, which
// almost always have few dimensions. With std::vector each of those was a heap allocation,
// about ten per call, which cost more than the kernel itself for a 32 x 10 softmax.
//
// Only for trivially copyable element types; the subset of std::vector's interface the
// core uses.
#pragma once

#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <new>
#include <type_traits>

namespace logitkit {

template <class T, std::size_t N>
class SmallVector {
  static_assert(std::is_trivially_copyable<T>::value, "SmallVector holds plain values only");

 public:
  using value_type = T;
  using size_type = std::size_t;
  using iterator = T*;
  using const_iterator = const T*;

  SmallVector() = default;
  SmallVector(std::initializer_list<T> values) { assign(values.begin(), values.end()); }
  SmallVector(size_type count, const T& value) { assign(count, value); }
  SmallVector(const SmallVector& other) { assign(other.begin(), other.end()); }
  SmallVector& operator=(const SmallVector& other) {
    if (this != &other) assign(other.begin(), other.end());
    return *this;
  }
  ~SmallVector() { release(); }

  size_type size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  T& operator[](size_type i) { return data_[i]; }
  const T& operator[](size_type i) const { return data_[i]; }
  T& back() { return data_[size_ - 1]; }
  const T& back() const { return data_[size_ - 1]; }
  iterator begin() { return data_; }
  iterator end() { return data_ + size_; }
  const_iterator begin() const { return data_; }
  const_iterator end() const { return data_ + size_; }

  void clear() { size_ = 0; }
  void push_back(const T& value) {
    if (size_ == capacity_) grow(capacity_ * 2);
    data_[size_++] = value;
  }
  void resize(size_type count, const T& value = T()) {
    reserve(count);
    for (size_type i = size_; i < count; ++i) data_[i] = value;
    size_ = count;
  }
  void reserve(size_type count) {
    if (count > capacity_) grow(count);
  }
  template <class It>
  void assign(It first, It last) {
    const size_type count = static_cast<size_type>(last - first);
    size_ = 0;
    reserve(count);
    for (size_type i = 0; i < count; ++i) data_[i] = static_cast<T>(first[i]);
    size_ = count;
  }
  void assign(size_type count, const T& value) {
    size_ = 0;
    resize(count, value);
  }

  friend bool operator==(const SmallVector& a, const SmallVector& b) {
    if (a.size_ != b.size_) return false;
    for (size_type i = 0; i < a.size_; ++i)
      if (!(a.data_[i] == b.data_[i])) return false;
    return true;
  }
  friend bool operator!=(const SmallVector& a, const SmallVector& b) { return !(a == b); }

 private:
  void grow(size_type capacity) {
    T* bigger = static_cast<T*>(::operator new(capacity * sizeof(T)));
    if (size_) std::memcpy(static_cast<void*>(bigger), data_, size_ * sizeof(T));
    release();
    data_ = bigger;
    capacity_ = capacity;
  }
  void release() {
    if (data_ != inline_) ::operator delete(data_);
    data_ = inline_;
    capacity_ = N;
  }

  T inline_[N];
  T* data_ = inline_;
  size_type size_ = 0;
  size_type capacity_ = N;
};

}  // namespace logitkit
