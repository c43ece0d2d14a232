/* What bindgen binds: DPDK's EAL, ethdev, mempool and mbuf APIs, and ferroplane's shim. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_memory.h>
#include <rte_dev.h>
#include <rte_bus.h>
#include "shim.h"
