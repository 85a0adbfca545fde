//! Who owns an offered call: the route table's application for the call's class, else the default
//! route — among the line's owner openers, by priority, then by who opened first.

use tapir_core::info::CallInfo;
use tapir_core::media::MediaModes;
use tapir_core::route::{DefaultRoute, RouteTable, call_class};
use tracing::debug;

use crate::opens::Opener;

/// Where an offered call goes.
pub(crate) enum Routed<'a> {
    /// To this opener, as owner.
    Owner(&'a Opener),
    /// Nobody owns it; monitors still see it.
    Unowned,
    /// No route takes the call's class (this one) and the default route rejects it.
    Reject(String),
}

/// Routes a call offered with `info` among a line's `openers`: the longest route matching the call's
/// class whose application has the line open as owner; else the default route.
pub(crate) fn route<'a>(table: &RouteTable, openers: &'a [Opener], info: &CallInfo) -> Routed<'a> {
    let class = call_class(info.media_mode, info.called.number.as_deref());
    let pick = |app: &str| {
        pick_owner(
            openers.iter().filter(|o| o.session.inbox.serves(app)),
            info.media_mode,
        )
    };
    let found = |o: Option<&'a Opener>| o.map_or(Routed::Unowned, Routed::Owner);
    for route in table.matching(&class) {
        if let Some(o) = pick(&route.application) {
            debug!(
                class,
                route = route.class,
                app = route.application,
                "routed"
            );
            return Routed::Owner(o);
        }
        debug!(
            class,
            route = route.class,
            app = route.application,
            "route's application has no owner open on the line; next"
        );
    }
    match table.default_route() {
        DefaultRoute::FirstOwner => found(pick_owner(openers, info.media_mode)),
        DefaultRoute::Application(app) => found(pick(app)),
        DefaultRoute::Reject => Routed::Reject(class),
    }
}

/// The owner of an offered call among `openers`: the highest-priority opener with owner privilege
/// whose media modes include the call's (any owner, if the call's media mode is not known yet);
/// the first to open on a tie.
fn pick_owner<'a>(
    openers: impl IntoIterator<Item = &'a Opener>,
    media: MediaModes,
) -> Option<&'a Opener> {
    openers
        .into_iter()
        .filter(|o| o.privileges.owns())
        .filter(|o| {
            media.is_empty() || media == MediaModes::UNKNOWN || o.media_modes.intersects(media)
        })
        .min_by_key(|o| (std::cmp::Reverse(o.priority), o.order))
}
