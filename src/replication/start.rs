//! How openraft starts: alone (a one-member cluster that initialises
//! itself and leads), or as a member of a cluster of several, serving its
//! peers and waiting to be initialised or reached by a leader.

use super::*;

/// Starts openraft on a one-member node, exactly as before peers existed:
/// initialise on first start, then elect itself and wait until it leads.
pub(super) fn start_alone(
    runtime: &tokio::runtime::Runtime,
    node_id: u64,
    config: openraft::Config,
    store: LogStore,
    state_machine: StateMachine,
) -> Result<Raft<types::TypeConfig>, StartError> {
    let raft = runtime
        .block_on(Raft::new(
            node_id,
            Arc::new(config),
            NoPeers,
            store,
            state_machine,
        ))
        .map_err(start_error)?;
    runtime.block_on(async {
        if raft.is_initialized().await.map_err(start_error)? {
            raft.trigger().elect().await.map_err(start_error)?;
        } else {
            let members = BTreeMap::from([(node_id, BasicNode::default())]);
            raft.initialize(members).await.map_err(start_error)?;
        }
        raft.wait(Some(Duration::from_secs(10)))
            .current_leader(node_id, "one-member cluster elects itself")
            .await
            .map_err(start_error)?;
        Ok::<(), StartError>(())
    })?;
    Ok(raft)
}

/// Starts openraft on a member of a cluster of several: binds the raft
/// address, serves peers there and returns at once. The node neither
/// initialises itself nor forces an election: it waits for
/// `Replica::initialize` or for a leader's messages, and elects by
/// openraft's timeouts.
pub(super) fn start_with_peers(
    runtime: &tokio::runtime::Runtime,
    node_id: u64,
    config: openraft::Config,
    peers: &PeerConfig,
    stats: Arc<PeerStats>,
    (store, state_machine): (LogStore, StateMachine),
    data_dir: &Path,
) -> Result<(Raft<types::TypeConfig>, peer::PeerServer), StartError> {
    let refusals = Arc::new(peer::RefusalLog::default());
    let network = peer::PeerNetwork::new(
        node_id,
        peers.clone(),
        Arc::clone(&stats),
        Arc::clone(&refusals),
    );
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(peers.listen)
            .await
            .map_err(|e| StartError(format!("raft address {}: {e}", peers.listen)))?;
        let raft = Raft::new(node_id, Arc::new(config), network, store, state_machine)
            .await
            .map_err(start_error)?;
        let server = peer::PeerServer::start(
            listener,
            raft.clone(),
            node_id,
            peers.clone(),
            stats,
            refusals,
            data_dir,
        )
        .map_err(start_error)?;
        Ok((raft, server))
    })
}
