/* The contract between the steering program (steering.bpf.c) and the engine
 * that fills its maps (steering_program.cc): plain C, included by both sides.
 *
 * The route tables live twice, as generations 0 and 1: a reload fills the
 * generation not in use and then flips `sbx_state.generation` in one map
 * update, so every lookup sees one whole configuration (docs/kernel-dispatch.md).
 *
 * A tuple is the engine's PackedTuple, byte for byte: w[0..1] the local
 * address (16 bytes as they are on the wire; IPv4 as ::ffff:a.b.c.d),
 * w[2..3] the remote address, w[4] = local port << 16 | remote port. */
#ifndef SBX_ENGINE_KERNEL_STEERING_ABI_H_
#define SBX_ENGINE_KERNEL_STEERING_ABI_H_

#include <linux/types.h>

#define SBX_STEER_GENERATIONS 2
#define SBX_STEER_MAX_RULES 16384       /* rule entries, all rule-sets of a generation */
#define SBX_STEER_MAX_SETS 1024         /* rule-sets, and map-sets, per generation */
#define SBX_STEER_MAX_MAP_ENTRIES 65536 /* map-set entries per generation */
#define SBX_STEER_MAX_BACKENDS 4096     /* listener slots (SOCKMAP) */
#define SBX_STEER_MAX_LISTEN 1024       /* the engine's own listening addresses */
#define SBX_STEER_MAX_STEPS 100         /* kMaxLookupSteps (engine/core/config_model.h) */

/* What a lookup step yields. Every end but STEER leaves the connection to
 * the engine's own listeners (the io_uring path decides and counts it). */
enum sbx_steer_kind {
  SBX_STEER_PASS = 0,      /* fail, jump-fd, -U paths, no decision: the engine's */
  SBX_STEER_BACKEND = 1,   /* arg: listener slot */
  SBX_STEER_JUMP_RULE = 2, /* arg: rule-set index */
  SBX_STEER_JUMP_MAP = 3,  /* arg: map-set index */
};

struct sbx_steer_action {
  __u32 kind;
  __u32 arg;
};

struct sbx_steer_tuple {
  __u64 w[5];
};

struct sbx_steer_rule {
  struct sbx_steer_tuple pattern; /* already masked */
  struct sbx_steer_tuple mask;
  struct sbx_steer_action action;
};

struct sbx_steer_rule_set {
  __u32 first; /* index of its first rule in the generation's rules */
  __u32 count;
  struct sbx_steer_action fallback; /* the set's default */
};

struct sbx_steer_map_set {
  struct sbx_steer_tuple mask;
  struct sbx_steer_action fallback;
};

struct sbx_steer_map_key {
  __u32 generation;
  __u32 set;
  struct sbx_steer_tuple key; /* masked by the set's mask */
};

/* Which connections are the engine's at all: its listening addresses. */
enum sbx_listen_kind {
  SBX_LISTEN_EXACT = 1,  /* addr: the listener's address (IPv4 as ::ffff:a.b.c.d) */
  SBX_LISTEN_ANY_V6 = 2, /* a wildcard that takes IPv6 connections */
  SBX_LISTEN_ANY_V4 = 3, /* a wildcard that takes IPv4 connections */
};

struct sbx_listen_key {
  __u16 port;
  __u16 kind;
  __u8 addr[16]; /* zero for the wildcards */
};

struct sbx_steer_state {
  __u32 generation; /* the generation lookups use */
  __u32 enabled;    /* 0: every connection passes */
  __u32 rule_sets[SBX_STEER_GENERATIONS];
  __u32 map_sets[SBX_STEER_GENERATIONS];
};

/* Per-CPU counters beside the per-slot `steered` counts. */
enum sbx_steer_counter {
  SBX_COUNT_NOT_OURS = 0,      /* no engine listener at that address and port */
  SBX_COUNT_TO_ENGINE = 1,     /* the configuration's end was not a backend */
  SBX_COUNT_NO_LISTENER = 2,   /* a backend whose listener nobody took */
  SBX_COUNT_ASSIGN_FAILED = 3, /* bpf_sk_assign refused (counted, then passed) */
  SBX_COUNT_GUARDED = 4,       /* to a steering listener's own port: refused */
  SBX_COUNT_MAX = 5,
};

#endif /* SBX_ENGINE_KERNEL_STEERING_ABI_H_ */
