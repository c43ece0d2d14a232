/*
 * ferroplane's C shim over DPDK's static inline functions, which have no symbol to link against.
 * Each function works on a whole burst where the per-packet work is only field access, so the
 * Rust side makes one foreign call per burst, not per packet.
 */
#ifndef FERROPLANE_DPDK_SHIM_H
#define FERROPLANE_DPDK_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

/* One received segment as the Rust side needs it. */
struct fp_mbuf_view {
	/* buf_addr + data_off: the first byte of the packet. */
	uint8_t *data;
	/* buf_addr: the start of the buffer the mbuf points at. */
	uint8_t *buf_addr;
	/* The mempool the mbuf header belongs to. */
	struct rte_mempool *pool;
	uint32_t pkt_len;
	uint16_t data_len;
	uint16_t nb_segs;
};

/* A buffer to attach to an mbuf header (ownership moves to the mbuf). */
struct fp_mbuf_attach {
	uint8_t *buf_addr;
	uint64_t buf_iova;
	uint16_t buf_len;
	/* Offset of the packet's first byte from buf_addr. */
	uint16_t data_off;
	/* Packet length (one segment); 0 for an empty buffer going back to its mempool. */
	uint16_t data_len;
};

/* rte_errno of the calling thread. */
int fp_errno(void);

uint16_t fp_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);

/* rte_eth_rx_burst, then the received mbufs described into views (one call per burst). */
uint16_t fp_rx_burst_views(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n,
			   struct fp_mbuf_view *views);

/* Transmit carriers in one call: allocates n mbufs from mp (all or none: returns -1 and
 * allocates nothing when the mempool has fewer), records each one's current buffer address in
 * old[i] and points it at attach[i]: buf_addr, iova, buf_len, data_off, data_len = pkt_len,
 * one segment. */
int fp_tx_carriers(struct rte_mempool *mp, struct rte_mbuf **pkts, uint16_t n,
		   const struct fp_mbuf_attach *attach, uint8_t **old);

/* Transmit carriers where some packets bring their own: pkts[i] non-NULL is a receive mbuf
 * still over packet i's frame (buf_addr unchanged), which only gets attach[i]'s data_off and
 * data_len (= pkt_len) and the flags an idle pinned-extbuf mbuf has (no receive flag may read
 * as a transmit offload); old[i] = NULL for it. Every NULL entry gets a carrier from mp as in
 * fp_tx_carriers. All or nothing: -1 (nothing changed) when mp has too few carriers. */
int fp_tx_prepare(struct rte_mempool *mp, struct rte_mbuf **pkts, uint16_t n,
		  const struct fp_mbuf_attach *attach, uint8_t **old);

/* Re-arms n mbufs of ferroplane's pinned-extbuf mempools with attach[i]'s buffers (as
 * fp_tx_carriers) and puts them straight back into their mempools: the caller owns them
 * (refcnt 1, one segment), so the generic free path's checks are not needed. */
void fp_mbuf_rearm_put(struct rte_mbuf *const *pkts, uint16_t n, const struct fp_mbuf_attach *attach);


#endif
