/*
 * forwarding.p4 (Tofino): plain IPv4 routing for all traffic that is not aggregation, as in the v1model program.
 */
#ifndef OMNIREDUCE_TNA_FORWARDING_P4
#define OMNIREDUCE_TNA_FORWARDING_P4

control Ipv4Forwarding(inout tna_headers_t hdr,
                       inout ingress_metadata_t meta,
                       inout ingress_intrinsic_metadata_for_tm_t ig_tm_md) {

    action route(port_t port, mac_addr_t src_mac, mac_addr_t dst_mac) {
        ig_tm_md.ucast_egress_port = port;
        hdr.ethernet.src_addr = src_mac;
        hdr.ethernet.dst_addr = dst_mac;
        hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
    }

    action no_route() {
        meta.drop_reason = DROP_NO_ROUTE;
    }

    table ipv4_routes {
        key = {
            hdr.ipv4.dst_addr : lpm @name("dst_addr");
        }
        actions = { route; @defaultonly no_route; }
        default_action = no_route();
        size = ROUTE_TABLE_SIZE;
    }

    apply {
        if (hdr.ipv4.ttl <= 1) {
            meta.drop_reason = DROP_TTL_EXPIRED;
        } else {
            ipv4_routes.apply();
        }
    }
}

#endif
