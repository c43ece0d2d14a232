/* See shim.h. Compiled by build.rs with libdpdk's pkg-config flags. */
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "shim.h"

int fp_errno(void)
{
	return rte_errno;
}

uint16_t fp_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

static inline void views_burst(struct rte_mbuf *const *pkts, uint16_t n,
			       struct fp_mbuf_view *views)
{
	for (uint16_t i = 0; i < n; i++) {
		const struct rte_mbuf *m = pkts[i];
		views[i].buf_addr = m->buf_addr;
		views[i].data = rte_pktmbuf_mtod(m, uint8_t *);
		views[i].pool = m->pool;
		views[i].pkt_len = m->pkt_len;
		views[i].data_len = m->data_len;
		views[i].nb_segs = m->nb_segs;
	}
}

uint16_t fp_rx_burst_views(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n,
			   struct fp_mbuf_view *views)
{
	uint16_t got = rte_eth_rx_burst(port, queue, pkts, n);
	views_burst(pkts, got, views);
	return got;
}

/* Points mbuf i at attach[i]'s buffer: buf_addr, iova, buf_len, data_off, data_len = pkt_len,
 * one segment. The caller owns the mbufs (refcnt 1) and the buffers. */
static inline void attach_burst(struct rte_mbuf *const *pkts, uint16_t n,
				const struct fp_mbuf_attach *attach)
{
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		const struct fp_mbuf_attach *a = &attach[i];
		m->buf_addr = a->buf_addr;
		rte_mbuf_iova_set(m, a->buf_iova);
		m->buf_len = a->buf_len;
		m->data_off = a->data_off;
		m->data_len = a->data_len;
		m->pkt_len = a->data_len;
		m->nb_segs = 1;
		m->next = NULL;
	}
}

int fp_tx_carriers(struct rte_mempool *mp, struct rte_mbuf **pkts, uint16_t n,
		   const struct fp_mbuf_attach *attach, uint8_t **old)
{
	if (rte_pktmbuf_alloc_bulk(mp, pkts, n) != 0)
		return -1;
	for (uint16_t i = 0; i < n; i++)
		old[i] = pkts[i]->buf_addr;
	attach_burst(pkts, n, attach);
	return 0;
}

int fp_tx_prepare(struct rte_mempool *mp, struct rte_mbuf **pkts, uint16_t n,
		  const struct fp_mbuf_attach *attach, uint8_t **old)
{
	struct rte_mbuf *carriers[256];
	uint16_t need = 0;
	if (n > 256)
		return -1;
	for (uint16_t i = 0; i < n; i++)
		need += pkts[i] == NULL;
	if (need > 0 && rte_pktmbuf_alloc_bulk(mp, carriers, need) != 0)
		return -1;
	uint16_t next = 0;
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		if (m == NULL) {
			m = carriers[next++];
			old[i] = m->buf_addr;
			attach_burst(&m, 1, &attach[i]);
			pkts[i] = m;
		} else {
			old[i] = NULL;
			m->data_off = attach[i].data_off;
			m->data_len = attach[i].data_len;
			m->pkt_len = attach[i].data_len;
			m->ol_flags = RTE_MBUF_F_EXTERNAL;
		}
	}
	return 0;
}

void fp_mbuf_rearm_put(struct rte_mbuf *const *pkts, uint16_t n, const struct fp_mbuf_attach *attach)
{
	attach_burst(pkts, n, attach);
	uint16_t i = 0;
	while (i < n) {
		/* A run of mbufs of one mempool goes back in one bulk put. */
		struct rte_mempool *mp = pkts[i]->pool;
		uint16_t j = i;
		while (j < n && pkts[j]->pool == mp) {
			/* The state a pinned-extbuf mbuf rests in (rte_pktmbuf_free's result). */
			pkts[j]->ol_flags = RTE_MBUF_F_EXTERNAL;
			j++;
		}
		rte_mempool_put_bulk(mp, (void *const *)&pkts[i], j - i);
		i = j;
	}
}
