// KeyBatch's conversions (see kv_batch_convert.h).
#include "daemon/wire/kv_batch_convert.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace meshd::wire {
namespace {

using domain::KvOp;
using Kind = KvOp::Kind;

// The op's job and generation must be the batch's, or left empty.
template <typename Req>
bool SameScope(const Req& op, const v1::KeyBatchRequest& batch) {
  return (op.job().empty() || op.job() == batch.job()) &&
         (op.generation() == 0 || op.generation() == batch.generation());
}

template <typename Req>
std::vector<std::string> Keys(Req& op) {
  return {std::make_move_iterator(op.mutable_keys()->begin()),
          std::make_move_iterator(op.mutable_keys()->end())};
}

}  // namespace

absl::StatusOr<std::vector<KvOp>> BatchOps(v1::KeyBatchRequest& req) {
  std::vector<KvOp> ops(req.ops_size());
  for (int i = 0; i < req.ops_size(); ++i) {
    v1::KeyOp& in = *req.mutable_ops(i);
    KvOp& op = ops[i];
    bool scope = true;
    switch (in.op_case()) {
      case v1::KeyOp::kSet:
        scope = SameScope(in.set(), req);
        op.kind = Kind::kSet;
        op.keys = {std::move(*in.mutable_set()->mutable_key())};
        op.value = std::move(*in.mutable_set()->mutable_value());
        break;
      case v1::KeyOp::kGet:
        scope = SameScope(in.get(), req);
        op.kind = Kind::kGet;
        op.keys = {std::move(*in.mutable_get()->mutable_key())};
        op.wait = in.get().wait();
        break;
      case v1::KeyOp::kAdd:
        scope = SameScope(in.add(), req);
        op.kind = Kind::kAdd;
        op.keys = {std::move(*in.mutable_add()->mutable_key())};
        op.delta = in.add().delta();
        break;
      case v1::KeyOp::kCompareSet: {
        v1::KeyCompareSetRequest& c = *in.mutable_compare_set();
        scope = SameScope(c, req);
        op.kind = Kind::kCompareSet;
        op.keys = {std::move(*c.mutable_key())};
        if (!c.expect_absent()) op.expected = std::move(*c.mutable_expected());
        op.value = std::move(*c.mutable_desired());
        break;
      }
      case v1::KeyOp::kWait:
        scope = SameScope(in.wait(), req);
        op.kind = Kind::kWait;
        op.keys = Keys(*in.mutable_wait());
        break;
      case v1::KeyOp::kCheck:
        scope = SameScope(in.check(), req);
        op.kind = Kind::kCheck;
        op.keys = Keys(*in.mutable_check());
        break;
      case v1::KeyOp::kDeleteKey:
        scope = SameScope(in.delete_key(), req);
        op.kind = Kind::kDelete;
        op.keys = {std::move(*in.mutable_delete_key()->mutable_key())};
        break;
      case v1::KeyOp::kCount:
        scope = SameScope(in.count(), req);
        op.kind = Kind::kCount;
        break;
      case v1::KeyOp::OP_NOT_SET:
        return absl::InvalidArgumentError(
            absl::StrCat("operation ", i, " of the batch is empty; set one of its kinds"));
    }
    if (!scope) {
      return absl::InvalidArgumentError(absl::StrCat(
          "operation ", i, " of the batch names another job or generation than the batch's; "
          "leave them empty"));
    }
  }
  return ops;
}

v1::KeyBatchResponse BatchAnswer(const std::vector<Kind>& kinds,
                                 std::vector<domain::KvOpResult> results) {
  v1::KeyBatchResponse out;
  out.mutable_results()->Reserve(static_cast<int>(results.size()));
  for (size_t i = 0; i < results.size(); ++i) {
    domain::KvOpResult& r = results[i];
    v1::KeyOpResult& o = *out.add_results();
    if (r.pending) {
      o.set_pending(true);
      continue;
    }
    if (!r.status.ok()) {
      o.set_code(static_cast<int>(r.status.code()));
      o.set_message(std::string(r.status.message()));
      continue;
    }
    switch (kinds[i]) {
      case Kind::kSet:
        o.mutable_set();
        break;
      case Kind::kGet:
        o.mutable_get()->set_value(std::move(r.value));
        break;
      case Kind::kAdd:
        o.mutable_add()->set_value(r.number);
        break;
      case Kind::kCompareSet:
        o.mutable_compare_set()->set_swapped(r.yes);
        o.mutable_compare_set()->set_value(std::move(r.value));
        o.mutable_compare_set()->set_present(r.present);
        break;
      case Kind::kWait:
        o.mutable_wait();
        break;
      case Kind::kCheck:
        o.mutable_check()->set_all_set(r.yes);
        break;
      case Kind::kDelete:
        o.mutable_delete_key()->set_deleted(r.yes);
        break;
      case Kind::kCount:
        o.mutable_count()->set_count(r.number);
        break;
    }
  }
  return out;
}

}  // namespace meshd::wire
