//! Corrupt stored records (written straight into RocksDB behind the engine's back) surface as
//! `Error::Storage`, never as a panic or a wrong answer.

mod common;

use common::Env;
use feed_engine::{EngineConfig, Error, codec, store::Cf};

fn poke(cfg: &EngineConfig, cf: Cf, key: &[u8], value: &[u8]) {
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &cfg.data_dir).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &cfg.data_dir, names).unwrap();
    db.put_cf(db.cf_handle(cf.name()).unwrap(), key, value).unwrap();
}

#[test]
fn corrupt_records_are_storage_errors() {
    let mut env = Env::new(|_| {});
    let [a, b] = [env.user("a"), env.user("b")];
    env.e().follow(b, a).unwrap();
    let p = env.post(a, "fine");
    env.idle();
    // Flush first: a raw open must not recover the WAL with options other than the engine's.
    env.e().shutdown(std::time::Duration::from_secs(5)).unwrap();
    drop(env.engine.take());
    for garbage in [&b""[..], b"\x01", b"\x01\x00\x00", &[0xff; 64]] {
        poke(&env.cfg, Cf::Posts, &codec::id_key(p.id), garbage);
        env.reopen();
        assert!(
            matches!(env.e().get_post(b, p.id), Err(Error::Storage(_))),
            "post record {garbage:?}"
        );
        let r = env.e().home_feed(b, 10, None);
        assert!(matches!(r, Err(Error::Storage(_))), "feed over {garbage:?}: {r:?}");
        env.e().shutdown(std::time::Duration::from_secs(5)).unwrap();
        drop(env.engine.take());
    }
    poke(&env.cfg, Cf::Users, &codec::id_key(a), b"\x09nonsense");
    env.reopen();
    assert!(matches!(env.e().get_user(a), Err(Error::Storage(_))));
    env.e().shutdown(std::time::Duration::from_secs(5)).unwrap();
    drop(env.engine.take());
    poke(&env.cfg, Cf::Pending, b"\x00\x00\x00\x00\x00\x00\x00\x07\x01", b"junk");
    let r = feed_engine::Engine::open(env.cfg.clone());
    assert!(
        matches!(r, Err(Error::Storage(_))),
        "a corrupt pending job is reported at open"
    );
}
