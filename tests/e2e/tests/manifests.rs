//! Keeps the deployment manifests exact and consistent with each other: every function in
//! `functions/` is a Spin component and a Workers env, Spin's routes equal the dev router's,
//! artifact paths match the crates, and each Workers env declares what envs do not inherit.

use std::collections::BTreeMap;

use e2e::repo_root;

fn read_toml(name: &str) -> toml::Table {
    let text = std::fs::read_to_string(repo_root().join(name)).unwrap_or_default();
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("{name} is not valid TOML: {e}"))
}

fn functions() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("functions"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.path().join("Cargo.toml").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn spin_routes(spin: &toml::Table) -> BTreeMap<String, String> {
    spin["trigger"]["http"]
        .as_array()
        .map(|triggers| {
            triggers
                .iter()
                .map(|t| {
                    (
                        t["route"].as_str().unwrap_or_default().to_owned(),
                        t["component"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn spin_manifest_is_v2_with_one_component_per_function() {
    let spin = read_toml("spin.toml");
    assert_eq!(spin["spin_manifest_version"].as_integer(), Some(2));
    let text = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap_or_default();
    assert!(
        text.starts_with("#:schema "),
        "spin.toml starts with a #:schema line"
    );
    let components = spin["component"].as_table().cloned().unwrap_or_default();
    let names: Vec<String> = components.keys().cloned().collect();
    assert_eq!(names, functions(), "spin components == functions/");
    for (name, c) in &components {
        let crate_file = format!("fn_{}", name.replace('-', "_"));
        assert_eq!(
            c["source"].as_str(),
            Some(format!("target/wasm32-wasip2/spin/{crate_file}.wasm").as_str()),
            "{name}: source is the crate's wasip2 artifact of the `spin` profile"
        );
        assert!(
            c.get("allowed_outbound_hosts").is_some(),
            "{name}: outbound hosts explicit"
        );
        let build = c["build"]["command"].as_str().unwrap_or_default();
        assert!(
            build.contains("--target wasm32-wasip2")
                && build.contains("--profile spin")
                && build.contains(&format!("-p fn-{name}"))
                && build.contains("--features spin"),
            "{name}: build command {build:?}"
        );
        // Every variable a component maps must be declared at application level.
        if let Some(vars) = c.get("variables").and_then(|v| v.as_table()) {
            for key in vars.keys() {
                assert!(
                    spin["variables"].get(key).is_some(),
                    "{name}: variable {key} not declared in [variables]"
                );
            }
        }
    }
    for (route, component) in spin_routes(&spin) {
        assert!(
            components.contains_key(&component),
            "route {route} -> unknown {component}"
        );
    }
}

#[test]
fn wrangler_has_an_env_per_function_with_its_own_name_main_and_build() {
    let wrangler = read_toml("wrangler.toml");
    let envs = wrangler["env"].as_table().cloned().unwrap_or_default();
    for name in functions().iter().map(String::as_str).chain(["store"]) {
        let env = envs
            .get(name)
            .and_then(|e| e.as_table())
            .unwrap_or_else(|| panic!("wrangler.toml lacks [env.{name}]"));
        assert_eq!(
            env["name"].as_str(),
            Some(format!("assistant-edge-{name}").as_str()),
            "{name}: explicit name"
        );
        assert_eq!(
            env["main"].as_str(),
            Some(format!("dist/workers/{name}/index.js").as_str()),
            "{name}: main is its worker-build output"
        );
        let build = env["build"]["command"].as_str().unwrap_or_default();
        assert_eq!(build, format!("scripts/build worker {name} --if-stale"));
        // Callers bind the store by script name; only the host carries migrations.
        if let Some(bindings) = env
            .get("durable_objects")
            .and_then(|d| d.get("bindings"))
            .and_then(|b| b.as_array())
        {
            for b in bindings {
                assert_eq!(b["class_name"].as_str(), Some("EdgeKv"));
                if name != "store" {
                    assert_eq!(b["script_name"].as_str(), Some("assistant-edge-store"));
                }
            }
        }
        assert_eq!(
            env.contains_key("migrations"),
            name == "store",
            "{name}: migrations only under the host"
        );
    }
    assert!(
        wrangler.get("migrations").is_none(),
        "no top-level migrations (inherited)"
    );
}

#[test]
fn dev_router_routes_equal_spin_routes() {
    let spin = read_toml("spin.toml");
    let wrangler = read_toml("wrangler.toml");
    let router = &wrangler["env"]["router"];
    let routes: BTreeMap<String, String> =
        serde_json::from_str(router["vars"]["ROUTES"].as_str().unwrap_or("{}")).unwrap_or_default();
    let services: BTreeMap<String, String> = router["services"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| {
                    (
                        s["binding"].as_str().unwrap_or_default().to_owned(),
                        s["service"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let via_router: BTreeMap<String, String> = routes
        .into_iter()
        .map(|(path, binding)| {
            let service = services.get(&binding).cloned().unwrap_or_default();
            (
                path,
                service.trim_start_matches("assistant-edge-").to_owned(),
            )
        })
        .collect();
    assert_eq!(via_router, spin_routes(&spin));
}

#[test]
fn scripts_know_every_function() {
    let lib = std::fs::read_to_string(repo_root().join("scripts/lib.sh")).unwrap_or_default();
    let line = lib
        .lines()
        .find(|l| l.starts_with("FUNCTIONS=("))
        .unwrap_or_default();
    let mut listed: Vec<String> = line
        .trim_start_matches("FUNCTIONS=(")
        .trim_end_matches(')')
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    listed.sort();
    assert_eq!(listed, functions());
}

/// The variables (lower case) a component must declare: what its function reads per the
/// secrets catalog, the `<NAME>_ROTATED_AT` companions of the functions that judge rotation
/// (health-comprehensive, health-secrets), plus the test-only probe's extra.
fn expected_variables(component: &str) -> Vec<String> {
    use secrets_catalog::{reads, rotation_reads, Function};
    let (function, extra): (Function, &[&str]) = match component {
        "kv-probe" => (Function::Health, &["ADMIN_TOKEN"]),
        name => (
            Function::from_name(name)
                .unwrap_or_else(|| panic!("component {name} is not a function the catalog knows")),
            &[],
        ),
    };
    let mut names: Vec<String> = reads(function)
        .map(|e| e.name.to_ascii_lowercase())
        .chain(extra.iter().map(|n| n.to_ascii_lowercase()))
        .chain(rotation_reads(function).map(|e| e.rotated_at_name().to_ascii_lowercase()))
        .collect();
    names.sort();
    names
}

fn check_spin_variables(manifest: &str) {
    use secrets_catalog::entry;
    let spin = read_toml(manifest);
    let components = spin["component"].as_table().cloned().unwrap_or_default();
    for (name, c) in &components {
        let declared = c
            .get("variables")
            .and_then(|v| v.as_table())
            .cloned()
            .unwrap_or_default();
        let mut keys: Vec<String> = declared.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            expected_variables(name),
            "{manifest}: component {name} must declare exactly the variables its function reads"
        );
        for (key, value) in &declared {
            assert_eq!(
                value.as_str(),
                Some(format!("{{{{ {key} }}}}").as_str()),
                "{manifest}: {name}.{key} maps the application variable of the same name"
            );
            let upper = key.to_ascii_uppercase();
            let secret = entry(&upper).is_some_and(|e| e.secret);
            let app = &spin["variables"][key.as_str()];
            assert_eq!(
                app.get("secret").and_then(|s| s.as_bool()).unwrap_or(false),
                secret,
                "{manifest}: {upper} must be declared `secret = true` exactly when the catalog says it is a secret"
            );
            // proxy_url is also the template of allowed_outbound_hosts, which Spin validates
            // with the default at load: it needs a valid URL (and production refuses http).
            // The same holds for the webhook's other host templates: Evolution (a local port;
            // production refuses http) and Anthropic (its real API, the catalog default).
            let default = match key.as_str() {
                "proxy_url" => "http://127.0.0.1:8790",
                "evolution_api_url" => "http://127.0.0.1:8080",
                "anthropic_base_url" => "https://api.anthropic.com",
                _ => "",
            };
            assert_eq!(
                app.get("default").and_then(|d| d.as_str()),
                Some(default),
                "{manifest}: {upper} defaults to {default:?} (unset: the catalog decides, never the manifest)"
            );
        }
    }
}

#[test]
fn each_spin_component_declares_exactly_the_variables_its_function_reads() {
    check_spin_variables("spin.toml");
    check_spin_variables("tests/kv-probe/spin.toml");
}

#[test]
fn no_deployable_worker_pins_a_setting_in_its_vars() {
    // A pinned ENVIRONMENT = "development" once shipped to production with every deploy.
    let wrangler = read_toml("wrangler.toml");
    let envs = wrangler["env"].as_table().cloned().unwrap_or_default();
    for name in functions() {
        let vars = envs[&name].get("vars").and_then(|v| v.as_table()).cloned();
        assert!(
            vars.is_none_or(|v| v.is_empty()),
            "[env.{name}.vars] pins settings; they come from the deployment or scripts/dev"
        );
    }
}

#[test]
fn unknown_paths_reach_a_function_on_spin_and_in_the_dev_router() {
    let spin = read_toml("spin.toml");
    assert!(
        spin_routes(&spin).contains_key("/..."),
        "spin.toml needs a catch-all /... route so unknown paths get the structured 404"
    );
}
