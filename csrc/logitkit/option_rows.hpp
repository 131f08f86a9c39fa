// Running a row kernel whose operands have different element types: the option paths of
// the softmax family, entropy and KL divergence, where a uint8 mask (where=) is read next
// to the float rows. As row_driver.hpp's run_rows, except that a row operand that is not
// contiguous along the axis (a strided view, a mask broadcast along the axis with stride
// 0) is gathered through a buffer of its own element size, one row at a time; written
// operands are scattered back. Blocks of rows are fixed by the shapes (parallel.hpp), so
// results do not depend on the number of workers.
#pragma once

#include <cstring>
#include <vector>

#include "row_driver.hpp"

namespace logitkit {

template <class Kernel>
void run_rows_mixed(const RowOperands& operands, int axis, int workers, Kernel kernel) {
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
        const idx step = plan.axis_stride[k] * size;
        const char* src = base(k, off[k]);
        if (!operands[k].written)
          for (idx i = 0; i < n; ++i) std::memcpy(buf + i * size, src + i * step, size);
        b.data[k] = buf;
      }
      b.rows = 1;
      b.n = n;
      kernel(b);
      for (int k = 0; k < count; ++k) {
        if (buffers[k].empty() || !operands[k].written) continue;
        const idx size = operands[k].itemsize;
        const idx step = plan.axis_stride[k] * size;
        char* dst = base(k, off[k]);
        const char* buf = reinterpret_cast<const char*>(buffers[k].data());
        for (idx i = 0; i < n; ++i) std::memcpy(dst + i * step, buf + i * size, size);
      }
    }
  });
}

}  // namespace logitkit
