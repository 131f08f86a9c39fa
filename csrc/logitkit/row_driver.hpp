// Running a row kernel over every row of strided n-d operands.
//
// A row kernel wants each operand that has the reduced axis ("row operands", any element
// type: float rows, a uint8 where= mask) contiguous along it, and takes several rows at
// once with a stride between them. Operands without the axis (per-row values such as
// labels or losses, any element type) just have a stride between rows. run_rows() finds
// the longest batch dimension to hand the kernel as its rows; when some row operand is not
// contiguous along the axis, it gathers that operand's rows one at a time into a buffer of
// its element size (and scatters written ones back), so any layout works without copying
// the whole array up front.
#pragma once

#include <array>
#include <cstring>
#include <type_traits>
#include <vector>

#include "axis_plan.hpp"

namespace logitkit {

struct RowOperand {
  const StridedArray* array;
  bool has_axis;  // a row operand (along the axis) or a per-row value
  idx itemsize;
  bool written;
};

// What a kernel call sees: for each operand its first row (or value) and the element
// stride between consecutive rows; `rows` rows of `n` elements.
struct RowBatch {
  std::array<char*, kMaxOperands> data;
  std::array<idx, kMaxOperands> row_stride;
  idx rows;
  idx n;
  template <class U>
  U* at(int k) const {
    return reinterpret_cast<U*>(data[k]);
  }
};

// The operands of one call (braced lists convert), kept on the stack.
using RowOperands = OperandList<RowOperand>;

inline AxisPlan plan_rows(const RowOperands& operands, int axis) {
  OperandList<const StridedArray*> arrays;
  OperandList<bool> has_axis;
  OperandList<idx> itemsizes;
  for (const RowOperand& op : operands) {
    arrays.push_back(op.array);
    has_axis.push_back(op.has_axis);
    itemsizes.push_back(op.itemsize);
  }
  return plan_axis(arrays, has_axis, axis, itemsizes);
}

// Copies n elements of `size` bytes from src (a byte step apart) to dst (another step
// apart). The common sizes get a fixed-size memcpy (a plain load and store).
inline void copy_elements(char* dst, idx dst_step, const char* src, idx src_step, idx n,
                          idx size) {
  auto copy = [&](auto fixed) {
    constexpr size_t bytes = decltype(fixed)::value;
    for (idx i = 0; i < n; ++i) std::memcpy(dst + i * dst_step, src + i * src_step, bytes);
  };
  switch (size) {
    case 1: return copy(std::integral_constant<size_t, 1>{});
    case 2: return copy(std::integral_constant<size_t, 2>{});
    case 4: return copy(std::integral_constant<size_t, 4>{});
    case 8: return copy(std::integral_constant<size_t, 8>{});
    default:
      for (idx i = 0; i < n; ++i)
        std::memcpy(dst + i * dst_step, src + i * src_step, static_cast<size_t>(size));
  }
}

// The rows go to the kernel in blocks (parallel.hpp: fixed by the shapes, on up to
// `workers` threads, so results do not depend on the number of workers); a kernel call
// must write only its own rows' outputs. Operands may have any element types (a uint8
// mask next to float rows, for the options): a row operand that is not contiguous along
// the axis (a strided view, a mask broadcast along the axis with stride 0) is gathered
// through a buffer of its own element size.
template <class Kernel>
void run_rows(const RowOperands& operands, int axis, int workers, Kernel kernel) {
  const AxisPlan plan = plan_rows(operands, axis);
  if (plan.empty_batch) return;
  const int count = plan.operands;
  const idx n = plan.n;

  bool contiguous = true;
  for (int k = 0; k < count; ++k)
    if (operands[k].has_axis && plan.axis_stride[k] != 1 && n > 1) contiguous = false;

  auto base = [&](int k, idx offset) {
    return static_cast<char*>(operands[k].array->data) + offset * operands[k].itemsize;
  };

  if (contiguous) {
    const int d = pick_batch_dim(plan, [](const BatchDim&) { return true; });
    for_each_block(plan, d, rows_per_task(n), n, workers,
                   [&](const auto& off, idx begin, idx rows) {
                     RowBatch b;
                     for (int k = 0; k < count; ++k) {
                       const idx stride = d < 0 ? 0 : plan.batch[d].stride[k];
                       b.data[k] = base(k, off[k] + begin * stride);
                       b.row_stride[k] = stride;
                     }
                     b.rows = rows;
                     b.n = n;
                     kernel(b);
                   });
    return;
  }

  // Gather mode: one row at a time through contiguous buffers (each task its own; 8-byte
  // units, so that any element type is aligned in them).
  const idx positions = position_count(plan, -1);
  const idx block = rows_per_task(n);
  const idx tasks = (positions + block - 1) / block;
  parallel_for(tasks, workers_for(positions * n, workers), [&](idx task) {
    std::vector<std::vector<double>> buffers(static_cast<size_t>(count));
    for (int k = 0; k < count; ++k)
      if (operands[k].has_axis && plan.axis_stride[k] != 1)
        buffers[k].resize(static_cast<size_t>((n * operands[k].itemsize + 7) / 8));
    const idx end = (task + 1) * block < positions ? (task + 1) * block : positions;
    for (idx position = task * block; position < end; ++position) {
      const auto off = position_offsets(plan, -1, position);
      RowBatch b;
      for (int k = 0; k < count; ++k) {
        b.row_stride[k] = 0;
        if (buffers[k].empty()) {
          b.data[k] = base(k, off[k]);
          continue;
        }
        char* buf = reinterpret_cast<char*>(buffers[k].data());
        const idx size = operands[k].itemsize;
        if (!operands[k].written)
          copy_elements(buf, size, base(k, off[k]), plan.axis_stride[k] * size, n, size);
        b.data[k] = buf;
      }
      b.rows = 1;
      b.n = n;
      kernel(b);
      for (int k = 0; k < count; ++k) {
        if (buffers[k].empty() || !operands[k].written) continue;
        const idx size = operands[k].itemsize;
        copy_elements(base(k, off[k]), plan.axis_stride[k] * size,
                      reinterpret_cast<const char*>(buffers[k].data()), size, n, size);
      }
    }
  });
}

// Calls f(offsets) for every batch position in C order, where offsets[k] is operand k's
// element offset (for validating per-row values such as labels before any work).
template <class F>
void for_each_row_value(const RowOperands& operands, int axis, F&& f) {
  const AxisPlan plan = plan_rows(operands, axis);
  if (plan.empty_batch) return;
  for_each_position(plan, -1, f);
}

}  // namespace logitkit
