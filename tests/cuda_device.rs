//! Device selection through a real engine on the default model, with and without the
//! `cuda` feature (CI runs this file both ways): `"cuda"` refused without the feature,
//! `"auto"` on the CPU with a note when there is no CUDA device, `"cuda"` refused with the
//! probe's reason when there is no driver; on a machine with a GPU, `"auto"` and `"cuda"`
//! run on it. The GPU parity and engine tests are separate binaries (`cuda_kernels`,
//! `cuda_engine`) that report NOT RUN without a device instead of passing.

mod common;

use common::{config_json, engine};
use rill::ffi::status::RillStatus;
use rill::{Engine, EngineConfig, Error};
use serde_json::json;

/// Creates an engine with `device`, as `rill_engine_create` does (parse, then create).
fn create(device: &str) -> rill::Result<Engine> {
    Engine::new(EngineConfig::from_json(&config_json(
        json!({ "device": device }),
    ))?)
}

fn config_error(r: rill::Result<Engine>) -> String {
    match r {
        Ok(_) => panic!("the engine was created"),
        Err(e) => {
            assert_eq!(e.status(), RillStatus::InvalidConfig, "{e}");
            assert!(
                matches!(&e, Error::Config { key, .. } if key == "device"),
                "{e}"
            );
            e.to_string()
        }
    }
}

#[test]
fn cpu_is_the_default_and_has_no_note() {
    let stats = engine(json!({})).stats();
    assert_eq!(stats["device"], "cpu");
    assert!(stats.get("device_note").is_none(), "{stats}");
    assert_eq!(engine(json!({"device": "cpu"})).stats()["device"], "cpu");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn without_the_feature_cuda_is_refused_naming_it_and_auto_is_the_cpu() {
    for d in ["cuda", "cuda:0", "cuda:1"] {
        let m = config_error(create(d));
        assert!(m.contains("`cuda` feature") && m.contains(d), "{m}");
    }
    let stats = create("auto").expect("auto").stats();
    assert_eq!(stats["device"], "cpu");
    assert_eq!(
        stats["device_note"],
        "auto: this build has no CUDA support (built without the `cuda` feature)"
    );
}

#[cfg(feature = "cuda")]
mod with_cuda {
    use super::*;
    use rill::backend::cuda::probe;

    #[test]
    fn auto_falls_back_to_the_cpu_with_the_reason_or_picks_a_present_gpu() {
        match probe::probe() {
            Err(reason) => {
                let stats = create("auto")
                    .expect("auto without CUDA runs on the CPU")
                    .stats();
                assert_eq!(stats["device"], "cpu");
                assert_eq!(stats["device_note"], format!("auto: {reason}"));
                println!("auto: {}", stats["device_note"]);
            }
            Ok(d) if d.devices.is_empty() => {
                let stats = create("auto").expect("auto").stats();
                assert_eq!(stats["device"], "cpu");
                assert!(stats["device_note"]
                    .as_str()
                    .unwrap()
                    .contains("no CUDA device"));
            }
            Ok(d) => {
                // A GPU is present: auto picks it and says which.
                let stats = create("auto").expect("auto on a GPU").stats();
                assert_eq!(stats["device"], "cuda:0", "{stats}");
                assert_eq!(stats["device_note"], format!("auto: {}", d.devices[0]));
                println!("GPU present: auto chose {}", stats["device_note"]);
            }
        }
    }

    #[test]
    fn cuda_without_a_driver_or_device_fails_with_the_reason() {
        match probe::probe() {
            Err(reason) => {
                for d in ["cuda", "cuda:0", "cuda:3"] {
                    let m = config_error(create(d));
                    assert!(
                        m.contains("is not available") && m.contains(&reason.to_string()),
                        "{m}"
                    );
                    println!("{d}: {m}");
                }
            }
            Ok(d) => {
                let n = d.devices.len();
                let m = config_error(create(&format!("cuda:{n}")));
                assert!(m.contains(&format!("no CUDA device {n}")), "{m}");
                if n > 0 {
                    let stats = create("cuda").expect("cuda on a GPU").stats();
                    assert_eq!(stats["device"], "cuda:0", "{stats}");
                    assert!(stats.get("device_note").is_none(), "{stats}");
                }
            }
        }
    }
}
