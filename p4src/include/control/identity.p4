/*
 * identity.p4: who sent an aggregation packet, and the job it belongs to.
 *
 * NOTE: identity comes only from what the controller installed, keyed by where the packet came from (ingress port,
 * source address, source UDP port); the packet's own job_id is merely checked against it. A packet from an
 * unregistered sender never reaches the aggregation registers.
 */
#ifndef OMNIREDUCE_IDENTITY_P4
#define OMNIREDUCE_IDENTITY_P4

control WorkerIdentity(inout headers_t hdr,
                       inout local_metadata_t meta,
                       inout standard_metadata_t standard_metadata) {

    action set_worker(job_id_t job_id, worker_id_t worker_id) {
        meta.job_id = job_id;
        meta.worker_id = worker_id;
    }

    action unknown_worker() {
        meta.drop_reason = DROP_UNKNOWN_WORKER;
    }

    table workers {
        key = {
            standard_metadata.ingress_port : exact @name("ingress_port");
            hdr.ipv4.src_addr              : exact @name("src_addr");
            hdr.udp.src_port               : exact @name("udp_src_port");
        }
        actions = { set_worker; @defaultonly unknown_worker; }
        const default_action = unknown_worker();
        size = WORKER_TABLE_SIZE;
    }

    action set_job(slot_t slot_base, slot_t slot_count, bit<8> worker_count, bit<16> mcast_grp) {
        meta.slot_base = slot_base;
        meta.slot_count = slot_count;
        meta.worker_count = worker_count;
        meta.mcast_grp = mcast_grp;
    }

    table jobs {
        key = {
            meta.job_id : exact @name("job_id");
        }
        actions = { set_job; @defaultonly unknown_worker; }
        const default_action = unknown_worker();
        size = MAX_JOBS;
    }

    apply {
        workers.apply();
        if (meta.drop_reason == 0) {
            jobs.apply();
        }
        if (meta.drop_reason == 0 && hdr.omni.job_id != meta.job_id) {
            meta.drop_reason = DROP_JOB_MISMATCH;
        }
        if (meta.drop_reason == 0 && hdr.omni.slot >= meta.slot_count) {
            meta.drop_reason = DROP_SLOT_OUT_OF_RANGE;
        }
    }
}

#endif
