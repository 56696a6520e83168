/*
 * delivery.p4 (egress): addresses each multicast copy of a result to its worker.
 *
 * NOTE: the PRE replicates a result once per worker of the job with egress_rid = worker_id, so one table keyed by
 * (job, rid) gives every copy its worker's MAC, IPv4 address and UDP port. Replays are unicast and were already
 * addressed in ingress (source and destination swapped).
 */
#ifndef OMNIREDUCE_DELIVERY_P4
#define OMNIREDUCE_DELIVERY_P4

control ResultDelivery(inout headers_t hdr,
                       inout local_metadata_t meta,
                       inout standard_metadata_t standard_metadata) {

    action set_result_destination(mac_addr_t dst_mac, ipv4_addr_t dst_addr, bit<16> udp_dst_port) {
        hdr.ethernet.src_addr = meta.result_src_mac;
        hdr.ethernet.dst_addr = dst_mac;
        hdr.ipv4.src_addr = meta.result_src_addr;
        hdr.ipv4.dst_addr = dst_addr;
        hdr.udp.src_port = OMNI_UDP_PORT;
        hdr.udp.dst_port = udp_dst_port;
    }

    action no_destination() {
        meta.drop_reason = DROP_NO_RESULT_DESTINATION;
    }

    table result_destinations {
        key = {
            meta.job_id                  : exact @name("job_id");
            standard_metadata.egress_rid : exact @name("worker_id");
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
