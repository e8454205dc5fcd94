// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The steering program: an sk_lookup program attached to the engine's
 * network namespace. For each new TCP connection it evaluates the
 * configuration exactly as RouteTable::Lookup does (engine/core/route_table.cc)
 * and, when the end is a backend whose listener a receiver took, puts the
 * connection straight into that listener's accept queue. Anything else
 * passes on to the ordinary socket lookup: to the engine's own listeners
 * and its io_uring path, or to whoever else listens there.
 *
 * GPL-2.0 OR MIT: the kernel's sk_lookup helpers are offered to GPL
 * programs only; the rest of the project is MIT. */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "steering_abi.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct sbx_steer_state);
} sbx_state SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SBX_STEER_MAX_LISTEN);
  __type(key, struct sbx_listen_key);
  __type(value, __u32);
} sbx_listen SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, SBX_STEER_GENERATIONS * SBX_STEER_MAX_SETS);
  __type(key, __u32);
  __type(value, struct sbx_steer_rule_set);
} sbx_rule_sets SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, SBX_STEER_GENERATIONS * SBX_STEER_MAX_RULES);
  __type(key, __u32);
  __type(value, struct sbx_steer_rule);
} sbx_rules SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, SBX_STEER_GENERATIONS * SBX_STEER_MAX_SETS);
  __type(key, __u32);
  __type(value, struct sbx_steer_map_set);
} sbx_map_sets SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SBX_STEER_GENERATIONS * SBX_STEER_MAX_MAP_ENTRIES);
  __type(key, struct sbx_steer_map_key);
  __type(value, struct sbx_steer_action);
} sbx_map_entries SEC(".maps");

/* The ports the steering listeners are bound to (each on [::]): reached
 * other than through the steering, they refuse. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SBX_STEER_MAX_BACKENDS);
  __type(key, __u32);
  __type(value, __u32);
} sbx_guard SEC(".maps");

/* Listener slots: the sockets connections are steered into. */
struct {
  __uint(type, BPF_MAP_TYPE_SOCKMAP);
  __uint(max_entries, SBX_STEER_MAX_BACKENDS);
  __type(key, __u32);
  __type(value, __u64);
} sbx_listeners SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SBX_STEER_MAX_BACKENDS);
  __type(key, __u32);
  __type(value, __u64);
} sbx_steered SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SBX_COUNT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} sbx_counters SEC(".maps");

static __always_inline void count(__u32 which) {
  __u64 *n = bpf_map_lookup_elem(&sbx_counters, &which);
  if (n) *n += 1;
}

static __always_inline int masked_equal(const struct sbx_steer_tuple *t,
                                        const struct sbx_steer_tuple *pattern,
                                        const struct sbx_steer_tuple *mask) {
  return ((t->w[0] & mask->w[0]) ^ pattern->w[0]) == 0 &&
         ((t->w[1] & mask->w[1]) ^ pattern->w[1]) == 0 &&
         ((t->w[2] & mask->w[2]) ^ pattern->w[2]) == 0 &&
         ((t->w[3] & mask->w[3]) ^ pattern->w[3]) == 0 &&
         ((t->w[4] & mask->w[4]) ^ pattern->w[4]) == 0;
}

/* One rule-set scan, rule by rule (bpf_loop's callback). */
struct scan {
  const struct sbx_steer_tuple *tuple;
  __u32 base;  /* generation * SBX_STEER_MAX_RULES + the set's first rule */
  int found;
  struct sbx_steer_action action;
};

static long scan_rule(__u32 i, void *data) {
  struct scan *s = data;
  __u32 index = s->base + i;
  struct sbx_steer_rule *rule = bpf_map_lookup_elem(&sbx_rules, &index);
  if (!rule) return 1;
  if (masked_equal(s->tuple, &rule->pattern, &rule->mask)) {
    s->found = 1;
    s->action = rule->action;
    return 1;
  }
  return 0;
}

/* The whole lookup: from rule-set 0 until an end, at most
 * SBX_STEER_MAX_STEPS set lookups (then no decision: the engine's). */
struct walk {
  const struct sbx_steer_tuple *tuple;
  const struct sbx_steer_state *state;
  __u32 generation;
  struct sbx_steer_action current;
  int done;
};

static long walk_step(__u32 step, void *data) {
  struct walk *w = data;
  struct sbx_steer_action next;
  __u32 g = w->generation;
  if (w->current.kind == SBX_STEER_JUMP_RULE) {
    if (w->current.arg >= w->state->rule_sets[g & 1]) goto no_decision;
    __u32 index = g * SBX_STEER_MAX_SETS + w->current.arg;
    struct sbx_steer_rule_set *set = bpf_map_lookup_elem(&sbx_rule_sets, &index);
    if (!set) goto no_decision;
    struct scan s = {.tuple = w->tuple, .base = g * SBX_STEER_MAX_RULES + set->first};
    __u32 rules = set->count;
    if (rules > SBX_STEER_MAX_RULES) rules = SBX_STEER_MAX_RULES;
    bpf_loop(rules, scan_rule, &s, 0);
    next = s.found ? s.action : set->fallback;
  } else if (w->current.kind == SBX_STEER_JUMP_MAP) {
    if (w->current.arg >= w->state->map_sets[g & 1]) goto no_decision;
    __u32 index = g * SBX_STEER_MAX_SETS + w->current.arg;
    struct sbx_steer_map_set *set = bpf_map_lookup_elem(&sbx_map_sets, &index);
    if (!set) goto no_decision;
    struct sbx_steer_map_key key = {.generation = g, .set = w->current.arg};
    for (int i = 0; i < 5; i++) key.key.w[i] = w->tuple->w[i] & set->mask.w[i];
    struct sbx_steer_action *hit = bpf_map_lookup_elem(&sbx_map_entries, &key);
    next = hit ? *hit : set->fallback;
  } else {
    w->done = 1;
    return 1;
  }
  w->current = next;
  if (next.kind != SBX_STEER_JUMP_RULE && next.kind != SBX_STEER_JUMP_MAP) {
    w->done = 1;
    return 1;
  }
  return 0;
no_decision:
  w->current.kind = SBX_STEER_PASS;
  w->done = 1;
  return 1;
}

static __always_inline int engine_listens(__u32 family, __u32 port, const __u8 *local) {
  struct sbx_listen_key key = {.port = (__u16)port, .kind = SBX_LISTEN_EXACT};
  __builtin_memcpy(key.addr, local, 16);
  if (bpf_map_lookup_elem(&sbx_listen, &key)) return 1;
  __builtin_memset(key.addr, 0, 16);
  key.kind = family == AF_INET6 ? SBX_LISTEN_ANY_V6 : SBX_LISTEN_ANY_V4;
  return bpf_map_lookup_elem(&sbx_listen, &key) != 0;
}

SEC("sk_lookup")
int sbx_steer(struct bpf_sk_lookup *ctx) {
  /* Every context field read once, unconditionally, before any branch:
   * the verifier refuses a read through a context pointer the compiler
   * has offset, which it does when it merges branch-dependent reads. */
  const __u32 family = ctx->family;
  const __u32 protocol = ctx->protocol;
  const __u32 local_port = ctx->local_port;
  const __u16 remote_port = bpf_ntohs(ctx->remote_port);
  const __u32 local4 = ctx->local_ip4, remote4 = ctx->remote_ip4;
  __u32 l[4] = {ctx->local_ip6[0], ctx->local_ip6[1], ctx->local_ip6[2], ctx->local_ip6[3]};
  __u32 r[4] = {ctx->remote_ip6[0], ctx->remote_ip6[1], ctx->remote_ip6[2], ctx->remote_ip6[3]};
  asm volatile("" ::: "memory");
  if (family == AF_INET) {
    /* ::ffff:a.b.c.d, as the engine holds IPv4 (engine/core/address.h). */
    l[0] = r[0] = l[1] = r[1] = 0;
    l[2] = r[2] = bpf_htonl(0xffff);
    l[3] = local4;
    r[3] = remote4;
  }
  if (protocol != IPPROTO_TCP || (family != AF_INET && family != AF_INET6)) return SK_PASS;
  if (bpf_map_lookup_elem(&sbx_guard, &local_port)) {
    count(SBX_COUNT_GUARDED);
    return SK_DROP;
  }
  __u32 zero = 0;
  struct sbx_steer_state *state = bpf_map_lookup_elem(&sbx_state, &zero);
  if (!state || !state->enabled) return SK_PASS;

  __u8 local[16];
  __builtin_memcpy(local, l, 16);
  if (!engine_listens(family, local_port, local)) {
    count(SBX_COUNT_NOT_OURS);
    return SK_PASS;
  }

  struct sbx_steer_tuple tuple;
  __builtin_memcpy(&tuple.w[0], l, 16);
  __builtin_memcpy(&tuple.w[2], r, 16);
  tuple.w[4] = (__u64)(local_port & 0xffff) << 16 | remote_port;

  struct walk w = {.tuple = &tuple,
                   .state = state,
                   .generation = state->generation & 1,
                   .current = {.kind = SBX_STEER_JUMP_RULE, .arg = 0}};
  bpf_loop(SBX_STEER_MAX_STEPS, walk_step, &w, 0);
  if (!w.done || w.current.kind != SBX_STEER_BACKEND) {
    count(SBX_COUNT_TO_ENGINE);
    return SK_PASS;
  }

  __u32 slot = w.current.arg;
  struct bpf_sock *sk = bpf_map_lookup_elem(&sbx_listeners, &slot);
  if (!sk) {
    count(SBX_COUNT_NO_LISTENER);
    return SK_PASS;
  }
  long err = bpf_sk_assign(ctx, sk, 0);
  bpf_sk_release(sk);
  if (err) {
    count(SBX_COUNT_ASSIGN_FAILED);
    return SK_PASS;
  }
  __u64 *n = bpf_map_lookup_elem(&sbx_steered, &slot);
  if (n) *n += 1;
  return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
