// SPDX-License-Identifier: MIT OR Apache-2.0
//! Property tests: every parser and the validator on random, truncated and mutated bytes
//! (no panics, only typed errors or verdicts), and sign → verify round trips over random
//! segments, algorithms, MAC lengths, option flags and address families, where any single
//! bit flip in the covered bytes makes verification fail.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use tcpao_refimpl::mac::mac_message;
use tcpao_refimpl::reassembly::{Fed, Reassembler, fragment};
use tcpao_refimpl::sign::{AoSign, Auth, IpHeader, build_segment, flip_bit};
use tcpao_refimpl::validate::Direction;
use tcpao_refimpl::wire::{
    AoOption, AoOptionRepr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpFlags, TcpOption,
    TcpPacket, TcpRepr, build_options,
};
use tcpao_refimpl::{
    Algorithm, Connection, FlowValidator, MasterKey, Mkt, SegmentRef, TrafficKey, TrafficKeys,
    Verdict, compute_mac, md5_digest, verify_mac, verify_md5,
};

/// Exercise every parser and accessor on `bytes`; must never panic.
fn poke_all(bytes: &[u8]) {
    if let Ok(p) = Ipv4Packet::new_checked(bytes) {
        let _ = (
            p.version(),
            p.header_len(),
            p.total_len(),
            p.ident(),
            p.tos(),
        );
        let _ = (
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.hop_limit(),
        );
        let _ = (p.protocol(), p.checksum(), p.src_addr(), p.dst_addr());
        let _ = (p.verify_checksum(), p.payload().len());
        let _ = Ipv4Repr::parse(&p);
    }
    if let Ok(p) = Ipv6Packet::new_checked(bytes) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
        );
        let _ = (p.next_header(), p.hop_limit(), p.src_addr(), p.dst_addr());
        let _ = (p.payload().len(), p.upper_layer(), p.fragment());
        let _ = Ipv6Repr::parse(&p);
    }
    // The reassembler, fed the bytes alone, then twice more (a repeat, then a changed copy).
    let mut r = Reassembler::new();
    let _ = r.feed(bytes);
    let _ = r.feed(bytes);
    if let Some((last, rest)) = bytes.split_last() {
        let _ = r.feed(&[rest, &[last ^ 0xff]].concat());
    }
    r.flush();
    let st = r.stats();
    assert!(st.reassembled + st.lost() <= 3, "{st:?}");
    poke_tcp(bytes);
    if let Ok(o) = AoOption::new_checked(bytes) {
        let _ = (o.length(), o.key_id(), o.rnext_key_id(), o.mac().len());
        let _ = AoOptionRepr::parse(&o);
    }
    if let Ok(seg) = SegmentRef::parse(bytes) {
        poke_tcp(seg.tcp);
        poke_seg(&seg);
    }
    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    if let Ok(seg) = SegmentRef::new(a, b, bytes) {
        poke_seg(&seg);
    }
    let a6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    if let Ok(seg) = SegmentRef::new(a6, a6, bytes) {
        poke_seg(&seg);
    }
}

fn poke_tcp(bytes: &[u8]) {
    if let Ok(t) = TcpPacket::new_checked(bytes) {
        let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number());
        let _ = (
            t.header_len(),
            t.flags(),
            t.window_len(),
            t.checksum(),
            t.urgent_at(),
        );
        let _ = (t.segment_len(), t.options().len(), t.payload().len());
        let opts: Vec<_> = t.options_iter().collect();
        // What the iterator read and what it left make up the option area.
        let mut it = t.options_iter();
        let _ = it.by_ref().count();
        assert_eq!(it.offset() + it.remainder().len(), t.options().len());
        let pad = t.padding_after(t.options().len() / 2 + 20..t.options().len() / 2 + 21);
        assert!(pad.len() < 4);
        // Options that parse re-encode to something the iterator reads back the same.
        let ok: Vec<TcpOption<'_>> = opts.iter().filter_map(|o| o.ok()).collect();
        if let Ok(enc) = build_options(&ok) {
            let again: Vec<_> = tcpao_refimpl::wire::TcpOptions::new(&enc)
                .filter_map(|o| o.ok())
                .filter(|o| *o != TcpOption::EndOfList)
                .collect();
            let orig: Vec<_> = ok
                .iter()
                .copied()
                .filter(|o| *o != TcpOption::EndOfList)
                .collect();
            assert_eq!(again, orig);
        }
        let _ = (t.auth_options(), t.ao_option());
        let _ = TcpRepr::parse(&t);
    }
}

fn keys_for_fuzz() -> Vec<Mkt> {
    Algorithm::ALL
        .iter()
        .enumerate()
        .map(|(i, a)| Mkt::new(i as u8, i as u8, *a, "fuzz"))
        .collect()
}

fn poke_seg(seg: &SegmentRef<'_>) {
    let _ = mac_message(7, seg, true);
    let _ = mac_message(7, seg, false);
    for alg in Algorithm::ALL {
        let k = TrafficKey::new(alg, &vec![1; alg.traffic_key_len()]).unwrap();
        for mac_len in [1, 12, 16] {
            let _ = compute_mac(&k, mac_len, 1, seg, true);
        }
        let _ = verify_mac(&k, 1, seg, false);
    }
    let _ = md5_digest(seg, b"k");
    let _ = verify_md5(seg, b"k");
    let t = seg.tcp_packet();
    let conn = Connection::new(
        SocketAddr::new(seg.src, t.src_port()),
        SocketAddr::new(seg.dst, t.dst_port()),
        1,
        2,
    );
    if let Ok(mut v) = FlowValidator::new(conn, keys_for_fuzz()) {
        let _ = v.validate(Direction::LocalToRemote, seg);
        let _ = v.validate(Direction::RemoteToLocal, seg);
    }
    if let Ok(v) = FlowValidator::new(conn, []) {
        let v = v.with_md5_key(MasterKey::from("k"));
        let _ = v.check(Direction::RemoteToLocal, seg, 0);
    }
}

/// A random TCP-level segment description.
#[derive(Debug, Clone)]
struct SegCase {
    alg: Algorithm,
    mac_len: usize,
    include: bool,
    v6: bool,
    key: Vec<u8>,
    send_id: u8,
    recv_id: u8,
    isns: (u32, u32),
    seq: u32,
    ack: u32,
    flags: u16,
    window: u16,
    sne: u32,
    opts: Vec<u8>,
    payload: Vec<u8>,
    ports: (u16, u16),
    addr_seed: u64,
}

fn arb_options() -> impl Strategy<Value = Vec<u8>> {
    // Up to 20 bytes of other options, so that they fit next to a 16-byte MAC.
    prop::collection::vec(
        prop_oneof![
            any::<u16>().prop_map(TcpOption::MaxSegmentSize),
            (0u8..15).prop_map(TcpOption::WindowScale),
            Just(TcpOption::SackPermitted),
            Just(TcpOption::NoOperation),
            (any::<u32>(), any::<u32>())
                .prop_map(|(tsval, tsecr)| TcpOption::Timestamp { tsval, tsecr }),
        ],
        0..4,
    )
    .prop_map(|os| {
        let mut out = Vec::new();
        for o in os {
            if out.len() + o.buffer_len() <= 20 {
                o.emit(&mut out).unwrap();
            }
        }
        out
    })
}

fn arb_case() -> impl Strategy<Value = SegCase> {
    (
        (
            prop::sample::select(Algorithm::ALL.to_vec()),
            1usize..=16,
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..90),
            any::<u8>(),
            any::<u8>(),
        ),
        (
            any::<(u32, u32)>(),
            any::<u32>(),
            any::<u32>(),
            prop::sample::select(vec![0x002u16, 0x012, 0x010, 0x018, 0x011, 0x014, 0x0d8]),
            any::<u16>(),
            any::<u32>(),
        ),
        (
            arb_options(),
            prop::collection::vec(any::<u8>(), 0..120),
            any::<(u16, u16)>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (alg, mac_len, include, v6, key, send_id, recv_id),
                (isns, seq, ack, flags, window, sne),
                (opts, payload, ports, addr_seed),
            )| SegCase {
                alg,
                mac_len,
                include,
                v6,
                key,
                send_id,
                recv_id,
                isns,
                seq,
                ack,
                flags,
                window,
                sne,
                opts,
                payload,
                ports,
                addr_seed,
            },
        )
}

struct Built {
    packet: Vec<u8>,
    conn: Connection,
    mkt: Mkt,
    sne: u32,
}

fn build(c: &SegCase) -> Built {
    let (src, dst) = if c.v6 {
        let s = c.addr_seed as u128;
        (
            IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | s)),
            IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | (s << 64) | 7)),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::from(c.addr_seed as u32)),
            IpAddr::V4(Ipv4Addr::from((c.addr_seed >> 32) as u32)),
        )
    };
    let conn = Connection::new(
        SocketAddr::new(src, c.ports.0),
        SocketAddr::new(dst, c.ports.1),
        c.isns.0,
        c.isns.1,
    );
    let mkt = Mkt::new(c.send_id, c.recv_id, c.alg, &c.key[..])
        .with_mac_len(c.mac_len)
        .unwrap()
        .with_include_options(c.include);
    let keys = TrafficKeys::derive(&mkt, &conn).unwrap();
    let flags = TcpFlags(c.flags);
    let syn_only = flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK);
    let tcp = TcpRepr {
        src_port: c.ports.0,
        dst_port: c.ports.1,
        seq_number: c.seq,
        ack_number: c.ack,
        flags,
        window_len: c.window,
        urgent_at: 0,
        options: &c.opts,
        payload: &c.payload,
    };
    let sign = AoSign::from_mkt(&mkt, keys.for_send(syn_only), c.sne);
    let packet = build_segment(&IpHeader::new(src, dst), &tcp, &Auth::Ao(sign)).unwrap();
    Built {
        packet,
        conn,
        mkt,
        sne: c.sne,
    }
}

/// Bit indices (in the IP packet) that the MAC covers (RFC 5925 §5.1): IP addresses, the
/// TCP header except the checksum and the MAC, the other options when included, the
/// payload.
/// The bits of the AO option's MAC field.
fn mac_bits(packet: &[u8]) -> Vec<usize> {
    let seg = SegmentRef::parse(packet).unwrap();
    let ao = seg.tcp_packet().auth_options().unwrap().ao.unwrap();
    (seg.tcp_offset + ao.start + 4..seg.tcp_offset + ao.end)
        .flat_map(|b| (0..8).map(move |k| b * 8 + k))
        .collect()
}

fn covered_bits(packet: &[u8], include: bool) -> Vec<usize> {
    let seg = SegmentRef::parse(packet).unwrap();
    let off = seg.tcp_offset;
    let t = seg.tcp_packet();
    let ao = t.auth_options().unwrap().ao.unwrap();
    let mut bytes = Vec::new();
    match seg.src {
        IpAddr::V4(_) => bytes.extend(12..20),
        IpAddr::V6(_) => bytes.extend(8..40),
    }
    for i in 0..seg.tcp.len() {
        let in_hdr_opts = (20..t.header_len()).contains(&i);
        let in_ao = ao.contains(&i);
        let in_mac = (ao.start + 4..ao.end).contains(&i);
        let covered = match () {
            _ if (16..18).contains(&i) => false,
            _ if in_mac => false,
            _ if in_ao => true,
            _ if in_hdr_opts => include,
            _ => true,
        };
        if covered {
            bytes.push(off + i);
        }
    }
    bytes
        .into_iter()
        .flat_map(|b| (0..8).map(move |k| b * 8 + k))
        .collect()
}

fn receiver(b: &Built) -> FlowValidator {
    FlowValidator::new(b.conn.reversed(), [b.mkt.peer_view()]).unwrap()
}

fn is_good(v: &FlowValidator, pkt: &[u8], sne: u32) -> bool {
    match SegmentRef::parse(pkt) {
        Ok(seg) => matches!(
            v.check(Direction::RemoteToLocal, &seg, sne),
            Verdict::Good { .. }
        ),
        Err(_) => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        poke_all(&bytes);
    }

    #[test]
    fn random_ip_like_bytes_never_panic(
        v6 in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 0..160),
        tcp_hdr in prop::collection::vec(any::<u8>(), 20..60),
    ) {
        // Plausible IP headers with random TCP to get past the first checks more often.
        let mut p = Vec::new();
        let tcp_len = tcp_hdr.len() + tail.len();
        if v6 {
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            p.extend_from_slice(&[6, 64]);
            p.extend_from_slice(&[0x20; 32]);
        } else {
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        }
        let mut tcp_hdr = tcp_hdr;
        tcp_hdr[12] = (tcp_hdr[12] & 0x0f) | (((tcp_hdr.len() / 4) as u8) << 4);
        p.extend_from_slice(&tcp_hdr);
        p.extend_from_slice(&tail);
        poke_all(&p);
    }

    #[test]
    fn truncated_and_mutated_signed_segments_never_panic(
        c in arb_case(),
        cut in any::<prop::sample::Index>(),
        muts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let b = build(&c);
        let v = receiver(&b);
        let n = cut.index(b.packet.len());
        let truncated = &b.packet[..n];
        poke_all(truncated);
        prop_assert!(!is_good(&v, truncated, b.sne));
        let mut m = b.packet.clone();
        for (i, x) in &muts {
            let i = i.index(m.len());
            m[i] = *x;
        }
        poke_all(&m);
    }

    #[test]
    fn fragments_of_a_signed_segment_reassemble_and_verify(
        c in arb_case(),
        size in 1usize..64,
        order in any::<prop::sample::Index>(),
    ) {
        // Any fragment size, the fragments rotated: the reassembled segment is the signed
        // one, DF aside (fragments clear it), and still verifies.
        let b = build(&c);
        let frags = fragment(&b.packet, size * 8).unwrap();
        let k = order.index(frags.len());
        let mut r = Reassembler::new();
        let mut done = None;
        for f in frags[k..].iter().chain(&frags[..k]) {
            match r.feed(f).unwrap() {
                Fed::Complete { packet, fragments } => {
                    prop_assert_eq!(fragments, frags.len() as u64);
                    done = Some(packet);
                }
                // One IPv4 piece (a segment no longer than its header) is no fragment; an
                // IPv6 one is an atomic fragment (RFC 8200 §4.5) and completes at once.
                Fed::NotFragment => {
                    prop_assert!(frags.len() == 1 && !c.v6);
                    done = Some(f.clone());
                }
                Fed::Held => {}
                Fed::Discarded(why) => prop_assert!(false, "discarded: {:?}", why),
            }
        }
        let packet = done.expect("complete");
        let ip_len = if c.v6 { 40 } else { 20 };
        prop_assert_eq!(&packet[ip_len..], &b.packet[ip_len..]);
        prop_assert!(is_good(&receiver(&b), &packet, c.sne));
    }

    #[test]
    fn sign_verify_roundtrip_and_bit_flips_fail(c in arb_case(), pick in any::<prop::sample::Index>()) {
        let b = build(&c);
        let mut v = receiver(&b);
        prop_assert!(is_good(&v, &b.packet, b.sne));
        // The stateful path agrees once its tracker is put where the SNE is.
        let seg = SegmentRef::parse(&b.packet).unwrap();
        v.set_sne_tracker(
            Direction::RemoteToLocal,
            tcpao_refimpl::SneTracker::with_state(c.seq, b.sne),
        );
        let verdict = v.validate(Direction::RemoteToLocal, &seg);
        prop_assert!(matches!(verdict, Verdict::Good { .. }), "{:?}", verdict);
        // The packet is well formed: both checksums right.
        prop_assert!(seg.tcp_packet().verify_checksum(&seg.src, &seg.dst));
        if !c.v6 {
            prop_assert!(Ipv4Packet::new_checked(&b.packet[..]).unwrap().verify_checksum());
        }
        // One random covered bit flipped: never Good. A MAC of m bytes collides with
        // probability 2^-8m, so for MACs under 4 bytes flip a bit of the MAC itself,
        // which can never verify; longer MACs take any covered bit.
        let bits = if c.mac_len >= 4 { covered_bits(&b.packet, c.include) } else { mac_bits(&b.packet) };
        let bit = bits[pick.index(bits.len())];
        let mut t = b.packet.clone();
        flip_bit(&mut t, bit);
        prop_assert!(!is_good(&v, &t, b.sne), "bit {} still verifies", bit);
        // Bits outside the coverage (checksum, excluded options) do not matter.
        let mut t = b.packet.clone();
        let off = seg.tcp_offset;
        flip_bit(&mut t, (off + 16) * 8 + 3);
        prop_assert!(is_good(&v, &t, b.sne));
    }
}

/// Every covered bit of a small segment, per algorithm and option flag: each flip fails.
#[test]
fn every_single_bit_flip_fails() {
    for alg in Algorithm::ALL {
        for include in [true, false] {
            for v6 in [false, true] {
                let c = SegCase {
                    alg,
                    mac_len: 12,
                    include,
                    v6,
                    key: b"bit flips".to_vec(),
                    send_id: 3,
                    recv_id: 4,
                    isns: (100, 200),
                    seq: 101,
                    ack: 201,
                    flags: 0x018,
                    window: 512,
                    sne: 0,
                    opts: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
                    payload: b"BGP KEEPALIVE".to_vec(),
                    ports: (40000, 179),
                    addr_seed: 0x0a00_0001_0a00_0002,
                };
                let b = build(&c);
                let v = receiver(&b);
                assert!(is_good(&v, &b.packet, 0));
                let bits = covered_bits(&b.packet, include);
                for bit in bits {
                    let mut t = b.packet.clone();
                    flip_bit(&mut t, bit);
                    assert!(
                        !is_good(&v, &t, 0),
                        "{alg} include={include} v6={v6}: bit {bit}"
                    );
                }
                // With options excluded, changing the timestamp does not matter.
                if !include {
                    let seg = SegmentRef::parse(&b.packet).unwrap();
                    let ts = seg.tcp_offset + seg.tcp_packet().header_len() - 1;
                    let mut t = b.packet.clone();
                    flip_bit(&mut t, ts * 8);
                    assert!(is_good(&v, &t, 0), "{alg} v6={v6}: excluded option flip");
                }
            }
        }
    }
}
