/*
 * delivery.p4 (Tofino, egress): addresses each multicast copy of a result (or of a forwarded message) to its
 * worker, as in the v1model program (p4src/include/control/delivery.p4).
 *
 * NOTE: the PRE replicates a result once per worker of the job with egress_rid = worker_id, so one table keyed by
 * (job, rid) gives every copy its worker's MAC, IPv4 address and UDP port. The copy still carries the aggregator's
 * addresses as its destination (ingress leaves them), which become its source. Replays were addressed in ingress.
 */
#ifndef OMNIREDUCE_TNA_DELIVERY_P4
#define OMNIREDUCE_TNA_DELIVERY_P4

control ResultDelivery(inout tna_headers_t hdr,
                       inout egress_metadata_t meta,
                       in bit<16> egress_rid) {

    action set_result_destination(mac_addr_t dst_mac, ipv4_addr_t dst_addr, bit<16> udp_dst_port) {
        hdr.ethernet.src_addr = hdr.ethernet.dst_addr;
        hdr.ethernet.dst_addr = dst_mac;
        hdr.ipv4.src_addr = hdr.ipv4.dst_addr;
        hdr.ipv4.dst_addr = dst_addr;
        hdr.udp.src_port = OMNI_UDP_PORT;
        hdr.udp.dst_port = udp_dst_port;
    }

    action no_destination() {
        meta.drop_reason = DROP_NO_RESULT_DESTINATION;
    }

    table result_destinations {
        key = {
            hdr.bridge.job_id : exact @name("job_id");
            egress_rid        : exact @name("worker_id");
        }
        actions = { set_result_destination; @defaultonly no_destination; }
        const default_action = no_destination();
        size = WORKER_TABLE_SIZE;
    }

    apply {
        result_destinations.apply();
    }
}

#endif
