//! The `#[atoll::main]` attribute: turns an app's `async fn main` into an
//! Atoll kernel's entry, and declares the devices the app needs.
//!
//! ```text
//! #[atoll::main(net = "service", block = "data", optional_block = "tls")]
//! async fn main() -> Result<(), Error> { ... }
//! ```
//!
//! `net` and `block` declare devices the app needs: no tender starts it
//! unless each is attached. `optional_net` and `optional_block` declare
//! devices it can live without: the command line may leave them out, and
//! the app then finds no such device (`atoll::device(NAME)` is `None`,
//! `BlockDevice::open(NAME)` fails with `NoSuchDevice`).
//!
//! It keeps the function as written and adds, in the app crate:
//! * the two ELF notes the tender checks before it boots a kernel: the ABI
//!   version, and the device manifest (one entry per device, in the order
//!   written, optional ones flagged), both in the `.note.atoll` section;
//! * `__atoll_main`, the symbol the runtime's entry code calls, which runs
//!   `main` on the executor and halts with its exit status.
//!
//! Device names are checked here (with errors pointing at the name) and
//! again by the ABI crate's `const fn`s when the notes are built.
//!
//! It does not accept arguments to `main` (use `atoll::args()` and
//! `atoll::devices()`), generics, or a non-`async` function. Use it through
//! the `atoll` facade: the generated code names `::atoll::__private`.
#![forbid(unsafe_code)]

use atoll_abi::boot::{is_valid_device_name, DeviceKind, MAX_DEVICES};
use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, LitStr, MetaNameValue, Token};

/// Marks the app's `async fn main` and declares its devices: `net = "NAME"`
/// and `block = "NAME"` for devices it needs, `optional_net = "NAME"` and
/// `optional_block = "NAME"` for devices it runs without when they are not
/// attached. See the crate docs.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// One `net = "name"`, `block = "name"` or their `optional_` forms.
struct DeviceDecl {
    kind: DeviceKind,
    name: LitStr,
    optional: bool,
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let devices = parse_devices(attr)?;
    let func: ItemFn = syn::parse2(item)?;
    check_signature(&func)?;

    let ident = &func.sig.ident;
    let entries = devices.iter().map(|device| {
        let kind = match device.kind {
            DeviceKind::Net => quote!(Net),
            DeviceKind::Block => quote!(Block),
        };
        let name = &device.name;
        let presence = if device.optional {
            quote!(Optional)
        } else {
            quote!(Required)
        };
        quote!((
            ::atoll::__private::DeviceKind::#kind,
            #name,
            ::atoll::__private::Presence::#presence
        ))
    });
    Ok(quote! {
        #func

        const _: () = {
            #[unsafe(link_section = ".note.atoll")]
            #[used]
            static ATOLL_ABI_NOTE: ::atoll::__private::Note<::atoll::__private::AbiDesc> =
                ::atoll::__private::abi_note();

            #[unsafe(link_section = ".note.atoll")]
            #[used]
            static ATOLL_MANIFEST_NOTE: ::atoll::__private::Note<::atoll::__private::ManifestDesc> =
                ::atoll::__private::manifest_note(&[#(#entries),*]);

            #[unsafe(export_name = "__atoll_main")]
            extern "Rust" fn atoll_main() -> ! {
                ::atoll::__private::run_main(#ident())
            }
        };
    })
}

fn parse_devices(attr: TokenStream2) -> syn::Result<Vec<DeviceDecl>> {
    let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(attr)?;
    let mut devices: Vec<DeviceDecl> = Vec::new();
    for pair in pairs {
        let (kind, optional) = match pair.path.get_ident().map(|i| i.to_string()).as_deref() {
            Some("net") => (DeviceKind::Net, false),
            Some("block") => (DeviceKind::Block, false),
            Some("optional_net") => (DeviceKind::Net, true),
            Some("optional_block") => (DeviceKind::Block, true),
            _ => {
                return Err(syn::Error::new(
                    pair.path.span(),
                    "unknown key in #[atoll::main]: expected `net = \"NAME\"`, `block = \"NAME\"`, \
                     `optional_net = \"NAME\"` or `optional_block = \"NAME\"`",
                ))
            }
        };
        let name = match &pair.value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(name), ..
            }) => name.clone(),
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "a device name is a string literal, like `net = \"service\"`",
                ))
            }
        };
        let value = name.value();
        if !is_valid_device_name(value.as_bytes()) {
            return Err(syn::Error::new(
                name.span(),
                "a device name is 1 to 31 characters of a-z, 0-9, _ and -",
            ));
        }
        if devices.iter().any(|d| d.name.value() == value) {
            return Err(syn::Error::new(
                name.span(),
                format!("device `{value}` is declared twice"),
            ));
        }
        devices.push(DeviceDecl { kind, name, optional });
    }
    if devices.len() > MAX_DEVICES {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("an Atoll app can have at most {MAX_DEVICES} devices"),
        ));
    }
    Ok(devices)
}

fn check_signature(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "#[atoll::main] needs an `async fn`",
        ));
    }
    if !sig.inputs.is_empty() {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "#[atoll::main] takes no arguments: use `atoll::args()` for boot arguments and `atoll::devices()` for devices",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(sig.generics.span(), "#[atoll::main] cannot be generic"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(attr: TokenStream2, item: TokenStream2) -> String {
        match expand(attr, item) {
            Ok(tokens) => panic!("expected an error, got {tokens}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn emits_notes_and_the_entry_with_devices_in_order() {
        let out = expand(
            quote!(net = "service", block = "data"),
            quote!(
                async fn main() {}
            ),
        )
        .unwrap()
        .to_string();
        assert!(out.contains("async fn main"), "{out}");
        assert!(out.contains("\"__atoll_main\""), "{out}");
        assert!(out.contains("abi_note ()"), "{out}");
        let net = out
            .find("DeviceKind :: Net , \"service\" , :: atoll :: __private :: Presence :: Required")
            .expect(&out);
        let block = out
            .find("DeviceKind :: Block , \"data\" , :: atoll :: __private :: Presence :: Required")
            .expect(&out);
        assert!(net < block, "manifest order is declaration order: {out}");
        assert_eq!(out.matches(".note.atoll").count(), 2);
    }

    #[test]
    fn optional_devices_are_flagged_in_declaration_order() {
        let out = expand(
            quote!(optional_net = "admin", net = "service", optional_block = "tls"),
            quote!(
                async fn main() {}
            ),
        )
        .unwrap()
        .to_string();
        let admin = out
            .find("DeviceKind :: Net , \"admin\" , :: atoll :: __private :: Presence :: Optional")
            .expect(&out);
        let service = out
            .find("\"service\" , :: atoll :: __private :: Presence :: Required")
            .expect(&out);
        let tls = out
            .find("DeviceKind :: Block , \"tls\" , :: atoll :: __private :: Presence :: Optional")
            .expect(&out);
        assert!(admin < service && service < tls, "{out}");
        let main = quote!(
            async fn main() {}
        );
        assert_eq!(
            error(quote!(block = "tls", optional_block = "tls"), main.clone()),
            "device `tls` is declared twice"
        );
        assert!(error(quote!(optional_disk = "tls"), main).starts_with("unknown key"));
    }

    #[test]
    fn an_app_without_devices_has_an_empty_manifest() {
        let out = expand(
            quote!(),
            quote!(
                async fn main() -> u8 {
                    0
                }
            ),
        )
        .unwrap();
        assert!(out.to_string().contains("manifest_note (& [])"), "{out}");
    }

    #[test]
    fn rejects_bad_functions() {
        assert_eq!(
            error(
                quote!(),
                quote!(
                    fn main() {}
                )
            ),
            "#[atoll::main] needs an `async fn`"
        );
        assert!(error(
            quote!(),
            quote!(
                async fn main(x: u32) {}
            )
        )
        .contains("takes no arguments"));
        assert_eq!(
            error(
                quote!(),
                quote!(
                    async fn main<T>() {}
                )
            ),
            "#[atoll::main] cannot be generic"
        );
    }

    #[test]
    fn rejects_bad_device_declarations() {
        let main = quote!(
            async fn main() {}
        );
        assert!(error(quote!(disk = "data"), main.clone()).starts_with("unknown key"));
        assert!(error(quote!(net = 3), main.clone()).contains("string literal"));
        assert!(error(quote!(net = "Service"), main.clone()).contains("a-z, 0-9"));
        assert_eq!(
            error(quote!(net = "a", block = "a"), main.clone()),
            "device `a` is declared twice"
        );
        let nine = quote!(
            net = "a",
            net = "b",
            net = "c",
            net = "d",
            net = "e",
            net = "f",
            net = "g",
            net = "h",
            net = "i"
        );
        assert_eq!(error(nine, main), "an Atoll app can have at most 8 devices");
    }
}
