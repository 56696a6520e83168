/*
 * identity.p4 (Tofino): who sent an aggregation packet, and the job it belongs to. The v1model program's tables,
 * keys and actions (p4src/include/control/identity.p4), plus the job's recirculation port.
 *
 * NOTE: identity comes only from what the controller installed, keyed by where the packet came from; the packet's
 * own job_id is merely checked against it. Field-to-field comparisons are written as max() and an equality test,
 * which a Tofino gateway can evaluate (it compares fields for equality, and with constants).
 */
#ifndef OMNIREDUCE_TNA_IDENTITY_P4
#define OMNIREDUCE_TNA_IDENTITY_P4

control WorkerIdentity(inout tna_headers_t hdr,
                       inout ingress_metadata_t meta,
                       in port_t ingress_port) {

    action set_worker(job_id_t job_id, worker_id_t worker_id) {
        meta.job_id = job_id;
        meta.worker_id = worker_id;
    }

    action unknown_worker() {
        meta.drop_reason = DROP_UNKNOWN_WORKER;
    }

    table workers {
        key = {
            ingress_port      : exact @name("ingress_port");
            hdr.ipv4.src_addr : exact @name("src_addr");
            hdr.udp.src_port  : exact @name("udp_src_port");
        }
        actions = { set_worker; @defaultonly unknown_worker; }
        const default_action = unknown_worker();
        size = WORKER_TABLE_SIZE;
    }

    // recirculation_port: where the job's packets take their second pass (docs/tofino.md): a recirculation port
    // (or a front-panel port in loopback) of the pipe its workers are connected to.
    action set_job(slot_t slot_base, slot_t slot_count, bit<8> worker_count, bit<16> mcast_grp,
                   port_t recirculation_port) {
        meta.slot_base = slot_base;
        meta.slot_count = slot_count;
        meta.worker_count = worker_count;
        meta.mcast_grp = mcast_grp;
        meta.recirculation_port = recirculation_port;
        // NOTE: computed here rather than in Admission's apply block, where the mid end would substitute the sum
        // for the field in the slot registers' index, which bf-p4c rejects ("the index is too complex"): a
        // stateful ALU's address is a field (or a hash of fields), not an arithmetic result.
        meta.global_slot = slot_base + hdr.omni.slot;
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
        meta.slot_max = max(hdr.omni.slot, meta.slot_count);
        if (meta.drop_reason == 0 && hdr.omni.job_id != meta.job_id) {
            meta.drop_reason = DROP_JOB_MISMATCH;
        }
        // slot >= slot_count: max(slot, slot_count) is the slot itself.
        if (meta.drop_reason == 0 && meta.slot_max == hdr.omni.slot) {
            meta.drop_reason = DROP_SLOT_OUT_OF_RANGE;
        }
    }
}

#endif
